"""Unsupervised surgical instrument segmentation (Liu et al., MICCAI 2020)."""

__version__ = "0.1.0"
