"""ROS test harness set-up: an isolated DDS domain for this test process, a tiny real model.

Environment (no ROS setup.bash is sourced): the ROS 2 wheels' ``ros_wheels_bootstrapper`` (a
``.pth`` file) re-executes every interpreter of the venv once with ``LD_LIBRARY_PATH`` pointing
at the wheels' shared libraries, and rmw_implementation picks FastDDS (the only RMW installed),
so rclpy and the ``segmentation_node`` console script work from ``.venv/bin`` as they are.
What this file sets, before any rclpy context exists and inherited by every node subprocess:

- ``ROS_DOMAIN_ID``: one per test process, claimed with an exclusive lock file, so parallel test
  runs on one machine (and a developer's live ROS graph) never see each other;
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: discovery stays on this machine;
- ``FASTDDS_DEFAULT_PROFILES_FILE``: the shipped profile (config/fastdds_large_data.xml), so the
  probe's camera-sized frames reach the nodes' best-effort subscriptions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from instrument_seg.cli.demo import claim_ros_domain  # lock-file claim, shared with make demo
from instrument_seg.ros.dds_profile import use_shipped_profile

os.environ["ROS_DOMAIN_ID"] = str(claim_ros_domain())
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
os.environ["PYTHONUNBUFFERED"] = "1"
# The test process publishes camera-sized frames, as a camera driver would: with the shipped
# FastDDS profile (docs/ros.md); the nodes under test pick it up by themselves as well.
for _name in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS"):
    os.environ.pop(_name, None)
os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
use_shipped_profile()

TINY_SIZE = (64, 80)


def write_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """An untrained ``UNet(width=4, depth=2)`` checkpoint at 64x80 in the training format.

    The head's weights are scaled up so that P(instrument) spreads over (0, 1) and depends on
    the pixels (an untrained head gives ~0.59 everywhere): a channel swap or a flipped image
    then changes the output measurably.
    """
    import torch

    from instrument_seg.config import default_config
    from instrument_seg.model.checkpoint import checkpoint_payload, model_kwargs
    from instrument_seg.model.unet import UNet

    config = default_config()
    config["data"]["size"] = list(TINY_SIZE)
    # runs at its training size (the default config now runs a model at twice it)
    config["model"].update(encoder="unet", width=4, depth=2, inference_scale=1)
    torch.manual_seed(seed)
    model = UNet(**model_kwargs(config)).eval()
    with torch.no_grad():
        model.head.weight.mul_(200.0)
    torch.save(checkpoint_payload(model, config), path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Real model files from one untrained tiny checkpoint (random weights: transport tests).

    Keys: ``checkpoint`` (.pt), ``onnx`` (exported and verified by ``inference.export``),
    ``nan_onnx`` (the same graph with its head's bias set to NaN: a model producing NaN),
    ``corrupt_onnx`` (random bytes).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from instrument_seg.inference.export import export

    root = tmp_path_factory.mktemp("models")
    checkpoint = write_tiny_checkpoint(root / "checkpoint.pt")
    onnx_path = root / "tiny.onnx"
    export(checkpoint, onnx_path)
    graph = onnx.load(str(onnx_path))
    head = [node for node in graph.graph.node if node.op_type == "Conv"][-1]
    tensor = next(t for t in graph.graph.initializer if t.name == head.input[-1])
    poisoned = np.full_like(numpy_helper.to_array(tensor), np.nan)
    tensor.CopyFrom(numpy_helper.from_array(poisoned, tensor.name))
    nan_path = root / "nan.onnx"
    onnx.save(graph, str(nan_path))
    corrupt = root / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    return {
        "checkpoint": checkpoint,
        "onnx": onnx_path,
        "nan_onnx": nan_path,
        "corrupt_onnx": corrupt,
    }
