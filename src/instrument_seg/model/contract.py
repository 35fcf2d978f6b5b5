"""The model's preprocessing contract and checkpoint format names, without torch.

Training writes these facts into every checkpoint (``model/checkpoint.py``) and export copies
them into ONNX metadata (``inference/contract.py``), so every backend prepares frames the same
way: uint8 RGB resized to the input size, scaled to [0, 1], minus :data:`NORM_MEAN`, divided by
:data:`NORM_STD`, NCHW.
"""

from __future__ import annotations

#: File name of a run directory's checkpoint.
CHECKPOINT = "checkpoint.pt"
#: Value of a checkpoint's ``format`` entry.
CHECKPOINT_FORMAT = "instrument_seg.checkpoint/1"
#: ImageNet mean / std of the input normalisation, RGB order.
NORM_MEAN = (0.485, 0.456, 0.406)
NORM_STD = (0.229, 0.224, 0.225)
CHANNEL_ORDER = "RGB"
