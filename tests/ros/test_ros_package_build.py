"""colcon builds the package as a ROS 2 ament_python package in a fresh workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ros_paths as paths

COLCON = Path(sys.executable).with_name("colcon")
PACKAGE_FILES = [
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "package.xml",
    "colcon.meta",
    "README.md",
    "resource",
    "src",
    "launch",
    "config",
]

pytestmark = pytest.mark.skipif(not COLCON.exists(), reason="colcon is not installed")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("colcon_ws")
    package = ws / "src" / "instrument_seg"
    package.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in PACKAGE_FILES:
        source = paths.REPO / name
        if source.is_dir():
            shutil.copytree(source, package / name, ignore=ignore)
        else:
            shutil.copy2(source, package / name)
    env = {**os.environ, "COLCON_HOME": str(ws / ".colcon")}
    listing = subprocess.run(
        [str(COLCON), "list"], cwd=ws, env=env, capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0, listing.stderr
    assert "(ros.ament_python)" in listing.stdout, listing.stdout
    build = subprocess.run(
        [str(COLCON), "build", "--event-handlers", "console_cohesion+"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "Summary: 1 package finished" in build.stdout, build.stdout
    return ws / "install" / "instrument_seg"


def test_executables(workspace):
    for name in ("segmentation_node", "evaluation_node", "instrument-seg"):
        exe = workspace / "lib" / "instrument_seg" / name
        assert exe.is_file() and os.access(exe, os.X_OK), exe


def test_launch_config_and_index(workspace):
    share = workspace / "share" / "instrument_seg"
    assert (share / "launch" / "seg.launch.py").read_text() == paths.LAUNCH_FILE.read_text()
    assert (share / "config" / "seg.yaml").read_text() == paths.SEG_YAML.read_text()
    assert (share / "launch" / "eval.launch.py").read_text() == paths.EVAL_LAUNCH_FILE.read_text()
    assert (share / "config" / "eval.yaml").read_text() == paths.EVAL_YAML.read_text()
    profile = share / "config" / "fastdds_large_data.xml"
    assert profile.read_text() == (paths.REPO / "config" / "fastdds_large_data.xml").read_text()
    assert (share / "package.xml").is_file()
    index = workspace / "share" / "ament_index" / "resource_index" / "packages" / "instrument_seg"
    assert index.is_file()


def test_installed_node_runs_from_the_install_space(workspace):
    """The installed executable imports the installed package and starts (then refuses the
    empty model_path: one fatal line, exit 1)."""
    pytest.importorskip("rclpy")
    site = next((workspace / "lib").glob("python3*/site-packages"))
    assert (site / "instrument_seg" / "ros" / "segmentation_node.py").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run(
        [sys.executable, "-c", "import instrument_seg.ros as r; print(r.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip().startswith(str(site)), probe.stdout + probe.stderr
    node = subprocess.run(
        [str(workspace / "lib" / "instrument_seg" / "segmentation_node"), "--ros-args"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert node.returncode == 1, node.stdout + node.stderr
    assert "cannot start: parameter model_path is empty" in node.stderr
