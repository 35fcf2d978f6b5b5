"""Inference behind one API: :class:`Segmenter` over TensorRT, ONNX Runtime and PyTorch.

>>> with Segmenter.from_path("model.onnx") as seg:  # doctest: +SKIP
...     mask, prob = seg.predict(rgb)  # uint8 (H, W) in {0, 255}, float32 (H, W) in [0, 1]

No module here imports ROS; only ``instrument_seg.ros`` wires this into nodes.
"""

from instrument_seg.inference.base import BACKENDS
from instrument_seg.inference.contract import ModelContract
from instrument_seg.inference.segmenter import Segmenter

__all__ = ["BACKENDS", "ModelContract", "Segmenter"]
