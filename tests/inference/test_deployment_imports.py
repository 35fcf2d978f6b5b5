"""The deployment path needs onnxruntime, OpenCV and numpy: nothing of training, cues or torch.

Each case runs in a fresh interpreter (``sys.modules`` of this test process is full of torch) and
does what a runtime image does: import the inference API or the ROS node module, load an ONNX
model, segment a frame. Then it lists what got imported.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from instrument_seg.inference.base import tensorrt_usable

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


#: Makes torch and the rest of the training stack unimportable in a probe.
BLOCKED = (
    "for _name in ('torch', 'scipy', 'skimage', 'matplotlib'):\n    sys.modules[_name] = None"
)

TRT_PROBE = """
import json, sys
{blocked}
import numpy as np
import instrument_seg.inference.tensorrt_backend
from instrument_seg.errors import InputError
from instrument_seg.inference import Segmenter
result = {{}}
try:
    with Segmenter.from_path(sys.argv[1], backend="tensorrt") as seg:
        mask, prob = seg.predict(np.full((48, 60, 3), 128, np.uint8))
    result["ran"] = list(mask.shape)
except InputError as exc:
    result["error"] = str(exc)
result["modules"] = sorted(k for k, v in sys.modules.items() if v is not None)
print(json.dumps(result))
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

    def test_tensorrt_backend_without_torch(self, tiny_onnx, tmp_path):
        """The TensorRT path imports and loads with torch, scipy, scikit-image and matplotlib
        made unimportable: its GPU memory comes from cuda-python. Where TensorRT and a GPU
        are usable it builds an engine from the ONNX and segments a frame; elsewhere loading
        stops at the one sentence saying what is missing (never at an ImportError of torch)."""
        onnx_copy = tmp_path / "model.onnx"
        shutil.copy(tiny_onnx, onnx_copy)
        probe = TRT_PROBE.format(blocked=BLOCKED)
        out = subprocess.run(
            [sys.executable, "-c", probe, str(onnx_copy)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if tensorrt_usable():
            assert result["ran"] == [48, 60], result
        else:
            assert result["error"].startswith("the tensorrt backend needs"), result
        assert "instrument_seg.inference.tensorrt_backend" in result["modules"]
        assert "instrument_seg.inference.cuda_runtime" in result["modules"]
        allowed = ("tensorrt", "instrument_seg.inference.tensorrt_backend")
        offenders = [m for m in _offenders(result["modules"]) if m.split(".")[0] != "tensorrt"]
        assert [m for m in offenders if m not in allowed] == []

    def test_the_blocked_probe_can_fail(self, tiny_onnx):
        """With torch blocked, code that needs torch does fail in the probe."""
        probe = f"import sys\n{BLOCKED}\nimport instrument_seg.inference.torch_backend\n"
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        assert out.returncode != 0 and "torch" in out.stderr

    def test_the_probe_sees_an_offender(self, tiny_onnx):
        """The check can fail: importing the training stack is reported."""
        modules = _loaded(tiny_onnx, "import instrument_seg.training.losses")
        assert "torch" in _offenders(modules)
