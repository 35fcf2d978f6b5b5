"""segmentation_node's /diagnostics status and warning texts (plain functions, no DDS).

The node publishes and logs them over real DDS in test_ros_segmentation_node.py and
test_ros_node_delivery.py; here each case of the status and the escaping of message strings.
"""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from instrument_seg.ros.params import SEGMENTATION, defaults, segmentation_settings  # noqa: E402
from instrument_seg.ros.realtime import Counters, FrameInfo  # noqa: E402
from instrument_seg.ros.segmentation_status import (  # noqa: E402
    EVENTS,
    delivery_problem,
    diagnostic_status,
    incompatible_qos_warning,
)

SETTINGS = segmentation_settings({**defaults(SEGMENTATION), "model_path": "/m.onnx"})


def status(counters: Counters, new: dict | None = None, **changes) -> DiagnosticStatus:
    inputs = {
        "topic": "/cam/image",
        "delivery_problem": "",
        "publishers": 1,
        "backend": "onnxruntime",
        "input_size": "64x80",
        "input_qos": "reliable/5",
        "fastdds_profile": "",
        **changes,
    }
    new = {**dict.fromkeys(EVENTS, 0), **(new or {})}
    return diagnostic_status("/ns/seg", counters.snapshot(), new, SETTINGS, **inputs)


def values(s: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in s.values}


class TestDiagnosticStatus:
    def test_waiting_names_the_topic_and_the_matched_publishers(self):
        s = status(Counters(), publishers=2)
        assert (s.level, s.name, s.hardware_id) == (DiagnosticStatus.OK, "/ns/seg: segmentation",
                                                    "/ns/seg")
        assert s.message.startswith("waiting for images on /cam/image (2 publisher(s) matched")
        assert status(Counters(), publishers=0).message == "waiting for images on /cam/image"

    def test_running_reports_rate_and_latency(self):
        c = Counters()
        c.add("received")
        c.processed_with_latency(0.01, 0.02)
        s = status(c)
        assert s.level == DiagnosticStatus.OK and " Hz in, p50 latency " in s.message
        v = values(s)
        assert (v["received"], v["processed"], v["backend"], v["input_size"]) == (
            "1", "1", "onnxruntime", "64x80",
        )  # fmt: skip
        assert (v["image_topic"], v["delivery"], v["output_qos"]) == ("/cam/image", "ok",
                                                                      "reliable/5")
        assert v["encodings"].startswith("rgb8,") and v["model_path"] == "/m.onnx"

    def test_new_events_warn(self):
        c = Counters()
        c.add("received")
        s = status(c, {"rejected": 2, "qos_incompatible": 1})
        assert s.level == DiagnosticStatus.WARN
        assert s.message.startswith("2 rejected, 1 qos incompatible frame event(s) since last")
        assert "see the node's log for /cam/image" in s.message

    def test_incompatible_qos_before_any_frame_warns(self):
        c = Counters()
        c.add("qos_incompatible")
        s = status(c)
        assert s.level == DiagnosticStatus.WARN
        assert s.message == "no images: incompatible QoS on /cam/image or an output (see the log)"

    def test_a_delivery_problem_is_the_message(self):
        s = status(Counters(), {"rejected": 1}, delivery_problem="frames do not get through")
        assert (s.level, s.message) == (DiagnosticStatus.WARN, "frames do not get through")
        assert values(s)["delivery"] == "frames do not get through"


class TestWarnings:
    def test_delivery_problem_escapes_the_frames_encoding(self):
        frame = FrameInfo(640, 480, "rgb8\n[FATAL] \x1b[31mfake", 921600)
        text = delivery_problem(
            "/cam/image", {"received": 1, "sent": 30, "seconds": 3.0}, 1, frame,
            ["best effort"], "reliable/5", "raw", "/p.xml",
        )  # fmt: skip
        assert "\n" not in text and "\x1b" not in text
        assert "640x480 'rgb8\\n[FATAL] \\x1b[3...' (22 characters), " in text
        assert "1 of about 30 sent by 1 publisher(s)" in text and ". Fixes: " in text
        assert "=/p.xml" in text and "transport:=compressed" in text

    @pytest.mark.parametrize(
        ("side", "words"),
        [
            ("subscription", ["the other publisher(s) best effort/5", "set input_qos auto"]),
            ("publisher", ["the other subscriber(s) best effort/5", "set output_qos reliable"]),
        ],
    )
    def test_incompatible_qos_says_both_sides_and_the_fix(self, side, words):
        text = incompatible_qos_warning("/t", side, "reliable/5", ["best effort/5"])
        assert text.startswith(f"incompatible QoS on /t: this node's {side} is reliable/5")
        for word in words:
            assert word in text
        assert "the other publisher(s) unknown" in incompatible_qos_warning(
            "/t", "subscription", "unknown", []
        )
