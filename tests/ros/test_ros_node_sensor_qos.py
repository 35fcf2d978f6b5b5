"""input_qos=sensor_data is best effort, NaN-producing models are rejected, 1 Hz diagnostics.

One node with ``input_qos:=sensor_data`` (set explicitly), a model whose head bias
is NaN (every output NaN) and a fixed threshold (so the Segmenter itself does not refuse the
map and the node's own finiteness check is what stops it), and the default diagnostics period;
it is also given two parameters it does not have.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("rclpy")

import ros_harness as rh  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from instrument_seg.ros.conversions import array_to_image  # noqa: E402

NS = "/seg_qos"
NODE = f"{NS}/segmentation_node"
IMAGE, MASK = f"{NS}/image", f"{NS}/mask"


@pytest.fixture(scope="module")
def nan_node(tiny_models, tmp_path_factory):
    params = {"model_path": str(tiny_models["nan_onnx"]), "input_qos": "sensor_data",
              "threshold": 0.5, "queue_dept": 3, "foo": 1}  # two parameters it does not have
    node = rh.NodeProcess(tmp_path_factory.mktemp("qos") / "node.log", NS, params)
    probe = rh.Probe("seg_qos_probe")
    probe.subscribe(MASK, Image, rh.qos("sensor_data", 5))
    probe.subscribe("/diagnostics", DiagnosticArray, 50)
    try:
        node.wait_ready(probe, IMAGE, MASK)
        yield node, probe
    finally:
        probe.close()
        node.stop()


def test_best_effort_publisher_matches_and_nan_output_is_rejected(nan_node):
    node, probe = nan_node
    pub = probe.node.create_publisher(Image, IMAGE, rh.qos("sensor_data", 1))
    assert probe.wait_for(lambda: pub.get_subscription_count() == 1, 20)
    frame = rh.camera_frame(256, 320)

    def rejected() -> int:
        values = probe.latest_diagnostics(NODE) or {}
        return int(values.get("rejected_nonfinite", 0))

    deadline = time.monotonic() + 20
    k = 0
    while rejected() == 0 and time.monotonic() < deadline:  # best effort: resend until one lands
        k += 1
        pub.publish(array_to_image(frame, "rgb8", rh.make_header(k)))
        probe.wait_for(lambda: rejected() > 0, 1.0)
    assert rejected() > 0, node.output()
    values = probe.latest_diagnostics(NODE)
    assert values["processed"] == "0" and values["input_qos"] == "sensor_data/5"
    assert not probe.messages[MASK], "a NaN map must not be published as a mask"
    warnings = [line for line in node.output().splitlines() if "[WARN]" in line]
    assert any(
        f"rejected a frame on {IMAGE}: the model's confidence map contains NaN" in line
        for line in warnings
    ), node.output()
    assert node.proc.poll() is None


def test_diagnostics_at_1_hz(nan_node):
    _, probe = nan_node
    start = len(probe.diagnostics_of(NODE))
    assert probe.wait_for(lambda: len(probe.diagnostics_of(NODE)) >= start + 3, 10)
    stamps = [
        m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec
        for m in probe.diagnostics_of(NODE)[start : start + 3]
    ]
    for a, b in zip(stamps, stamps[1:], strict=False):
        assert 0.7 <= b - a <= 1.3


def test_unknown_parameters_named_once(nan_node):
    node, _ = nan_node
    lines = [ln for ln in node.output().splitlines() if "does not have" in ln]
    assert len(lines) == 1 and "[WARN]" in lines[0], node.output()
    assert "foo, queue_dept (did you mean queue_depth?)" in lines[0]
