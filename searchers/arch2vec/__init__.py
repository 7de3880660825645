"""arch2vec: unsupervised graph-VAE embeddings of architectures and BO in their latent space.

* ``model.py`` the graph VAE; ``pretrain.py`` training and checksummed weight files;
  ``embedding.py`` embeddings; ``quality.py`` the quality report; ``strategy.py`` the
  ``arch2vec`` strategy (registered in ``hwnas.searchers.strategies.STRATEGIES``).
* ``weights/nb201.pt`` (+ ``.json`` sidecar with config and SHA-256) ships with the package;
  ``python -m hwnas.searchers.arch2vec pretrain --space nb201 --out FILE`` (defaults: 20
  epochs, seed 0, one torch thread) reproduces it bit for bit on x86-64 machines with AVX2
  and torch 2.13.0's CPU build: the command pins the CPU kernels first (``numerics.py``).
  Spaces without a shipped file are pretrained on first use, the same way in a child process,
  into ``$HWNAS_CACHE_DIR`` / ``~/.cache/hwnas/arch2vec``.
* ``python -m hwnas.searchers.arch2vec quality --model FILE`` prints reconstruction, decoded
  validity and latent smoothness on the NB201 table.

Submodules import torch; this package file does not, so registering the strategy stays cheap.
"""
