"""arch2vec: unsupervised graph-VAE embeddings of architectures and BO in their latent space.

* ``model.py`` the graph VAE; ``pretrain.py`` training and checksummed weight files;
  ``embedding.py`` embeddings; ``quality.py`` the quality report; ``strategy.py`` the
  ``arch2vec`` strategy (registered in ``hwnas.searchers.strategies.STRATEGIES``).
* ``weights/nb201.pt`` (+ ``.json`` sidecar with config and SHA-256) ships with the package;
  it is reproduced bit for bit by
  ``python -m hwnas.searchers.arch2vec pretrain --space nb201 --out FILE``
  (defaults: 20 epochs, seed 0, one torch thread). Spaces without a shipped file are
  pretrained on first use into ``$HWNAS_CACHE_DIR`` / ``~/.cache/hwnas/arch2vec``.
* ``python -m hwnas.searchers.arch2vec quality --model FILE`` prints reconstruction, decoded
  validity and latent smoothness on the NB201 table.

Submodules import torch; this package file does not, so registering the strategy stays cheap.
"""
