"""The segmentation network and its checkpoint format.

- :mod:`instrument_seg.model.contract`: the preprocessing contract and checkpoint format names
  (no torch: the deployment path reads them);
- :mod:`instrument_seg.model.unet`: the U-Net (torch);
- :mod:`instrument_seg.model.checkpoint`: writing and reading ``checkpoint.pt`` (torch).

This ``__init__`` imports nothing, so ``instrument_seg.model.contract`` stays torch-free.
"""
