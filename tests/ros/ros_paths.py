"""Where the ROS files of the repository are, and the launch file as a module (no rclpy)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "seg.launch.py"
EVAL_LAUNCH_FILE = REPO / "launch" / "eval.launch.py"
SEG_YAML = REPO / "config" / "seg.yaml"
EVAL_YAML = REPO / "config" / "eval.yaml"


def load_launch_module(path: Path = LAUNCH_FILE) -> ModuleType:
    """A launch file (default ``launch/seg.launch.py``) as a module (its launch imports are
    inside its functions)."""
    spec = importlib.util.spec_from_file_location(path.name.split(".")[0] + "_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
