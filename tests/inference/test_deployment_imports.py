"""The deployment path needs onnxruntime, OpenCV and numpy: nothing of training, cues or torch.

Each case runs in a fresh interpreter (``sys.modules`` of this test process is full of torch) and
does what a runtime image does: import the inference API or the ROS node module, load an ONNX
model, segment a frame. Then it lists what got imported.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

FORBIDDEN_ROOTS = ("torch", "scipy", "skimage", "matplotlib", "h5py", "tensorrt")
FORBIDDEN_PARTS = (
    "instrument_seg.training",
    "instrument_seg.cues",
    "instrument_seg.evaluation",
    "instrument_seg.cli",
    "instrument_seg.model.unet",
    "instrument_seg.model.checkpoint",
    "instrument_seg.inference.export",
    "instrument_seg.inference.torch_backend",
    "instrument_seg.inference.tensorrt_backend",
)

PROBE = """
import json, sys
import numpy as np
{imports}
from instrument_seg.inference import Segmenter
with Segmenter.from_path(sys.argv[1]) as seg:
    mask, prob = seg.predict(np.full((48, 60, 3), 128, np.uint8))
assert mask.shape == (48, 60) and prob.dtype == np.float32
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(onnx_path, imports: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports), str(onnx_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _offenders(modules: list[str]) -> list[str]:
    return [
        m
        for m in modules
        if m.split(".")[0] in FORBIDDEN_ROOTS
        or any(m == p or m.startswith(p + ".") for p in FORBIDDEN_PARTS)
    ]


class TestDeploymentImports:
    def test_inference_api_runs_onnx_without_training_stack(self, tiny_onnx):
        modules = _loaded(tiny_onnx, "import instrument_seg.inference")
        assert "onnxruntime" in modules  # the probe really ran the model
        assert _offenders(modules) == []

    @pytest.mark.skipif(importlib.util.find_spec("rclpy") is None, reason="rclpy not installed")
    def test_segmentation_node_module_runs_onnx_without_training_stack(self, tiny_onnx):
        modules = _loaded(tiny_onnx, "import instrument_seg.ros.segmentation_node")
        assert "rclpy" in modules and "onnxruntime" in modules
        assert _offenders(modules) == []

    def test_the_probe_sees_an_offender(self, tiny_onnx):
        """The check can fail: importing the training stack is reported."""
        modules = _loaded(tiny_onnx, "import instrument_seg.training.losses")
        assert "torch" in _offenders(modules)
