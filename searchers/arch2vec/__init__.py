"""arch2vec: unsupervised graph-VAE embeddings of architectures and BO in their latent space.

Submodules import torch; this package file does not, so registering the strategy stays cheap.
"""
