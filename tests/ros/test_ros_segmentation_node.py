"""segmentation_node end to end: the console script, real frames over real DDS (FastDDS).

One node runs for the whole module, started the way ``seg.launch.py`` starts it (the launch
file's own plan: the repo's ``config/seg.yaml`` as params file, ``model_path`` override, the
``image`` remapping, a namespace). A probe node publishes frames and checks what comes back.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

import ros_harness as rh  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from instrument_seg.inference import Segmenter  # noqa: E402
from instrument_seg.ros.conversions import array_to_image, image_to_array  # noqa: E402

NS = "/seg_test"
NODE = f"{NS}/segmentation_node"
IMAGE = f"{NS}/camera/image_raw"
MASK, CONFIDENCE, OVERLAY = f"{NS}/mask", f"{NS}/confidence", f"{NS}/overlay"
BIG = (1024, 1280)
MAX_PIXELS = BIG[0] * BIG[1]  # the 1280x1024 frames pass, anything larger is oversize
ANSWER_TIMEOUT = 20.0


@dataclass
class Running:
    node: rh.NodeProcess
    probe: rh.Probe
    pub: Any
    burst_pub: Any
    next_k: int = 0

    def header(self):
        self.next_k += 1
        return rh.make_header(self.next_k)


@pytest.fixture(scope="module")
def reference(tiny_models):
    """The same model in this process: what the node must publish for a given RGB frame."""
    with Segmenter.from_path(tiny_models["onnx"]) as segmenter:
        yield segmenter


@pytest.fixture(scope="module")
def running(tiny_models, tmp_path_factory):
    launch = rh.load_launch_module()
    values = {
        "model_path": str(tiny_models["onnx"]),
        "image_topic": "camera/image_raw",
        "backend": "",
        "params_file": "",
        "namespace": NS,
        "stereo": "false",
    }
    (plan,) = launch.node_plans(values, str(rh.SEG_YAML))
    params_file, overrides = plan["parameters"]
    overrides = {
        **overrides,
        "max_pixels": MAX_PIXELS,
        "diagnostics_period": 0.25,
        "warning_period": 120.0,  # one warning per kind for the whole module
    }
    log = tmp_path_factory.mktemp("node") / "segmentation_node.log"
    node = rh.NodeProcess(log, plan["namespace"], overrides, params_file, plan["remappings"])
    probe = rh.Probe("seg_test_probe")
    reliable = rh.qos("reliable", 10)
    probe.subscribe(MASK, Image, reliable)
    probe.subscribe(CONFIDENCE, Image, reliable)
    probe.subscribe("/diagnostics", DiagnosticArray, 50)
    try:
        node.wait_ready(probe, IMAGE, MASK)
        pub = probe.node.create_publisher(Image, IMAGE, rh.qos("reliable", 1))
        burst_pub = probe.node.create_publisher(Image, IMAGE, rh.qos("reliable", 30))
        assert probe.wait_for(
            lambda: pub.get_subscription_count() and burst_pub.get_subscription_count(), 20
        )
        yield Running(node, probe, pub, burst_pub)
    finally:
        probe.close()
        node.stop()


def exchange(run: Running, msg: Image, topics=(MASK, CONFIDENCE)) -> list[Image]:
    """Publishes ``msg`` and returns the outputs with its stamp (re-sent every 2 s: the first
    frames after discovery may precede the node's side of the match)."""
    key = rh.stamp_key(msg.header)
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while time.monotonic() < deadline:
        run.pub.publish(msg)
        if run.probe.wait_for(
            lambda: all(run.probe.by_stamp(t, key) for t in topics), min(2.0, ANSWER_TIMEOUT)
        ):
            return [run.probe.by_stamp(t, key) for t in topics]
    raise AssertionError(f"no answer on {topics} for stamp {key}:\n{run.node.output()}")


def diagnostics(run: Running, predicate=lambda d: True, timeout: float = 10.0) -> dict:
    """Diagnostics values published after this call (the second message from now, so none
    computed before it) once ``predicate`` holds for the newest ones."""
    start = len(run.probe.diagnostics_of(NODE))
    found: dict = {}

    def ready() -> bool:
        if len(run.probe.diagnostics_of(NODE)) < start + 2:
            return False
        values = run.probe.latest_diagnostics(NODE)
        if values is not None and predicate(values):
            found.update(values)
            return True
        return False

    assert run.probe.wait_for(ready, timeout), (
        run.probe.latest_diagnostics(NODE),
        run.node.output(),
    )
    return found


def counter(values: dict, key: str) -> int:
    return int(values.get(key, 0))


def assert_matches_reference(mask_msg, conf_msg, header, rgb, reference) -> None:
    h, w = rgb.shape[:2]
    for msg in (mask_msg, conf_msg):
        assert rh.stamp_key(msg.header) == rh.stamp_key(header)
        assert msg.header.frame_id == header.frame_id
        assert (msg.height, msg.width, msg.is_bigendian) == (h, w, 0)
    assert (mask_msg.encoding, mask_msg.step) == ("mono8", w)
    assert (conf_msg.encoding, conf_msg.step) == ("32FC1", 4 * w)
    mask, prob = image_to_array(mask_msg), image_to_array(conf_msg)
    assert set(np.unique(mask).tolist()) <= {0, 255}
    assert np.isfinite(prob).all() and prob.min() >= 0.0 and prob.max() <= 1.0
    expected_mask, expected_prob = reference.predict(np.ascontiguousarray(rgb))
    np.testing.assert_allclose(prob, expected_prob, atol=1e-5)
    assert np.mean(mask == expected_mask) > 0.999


class TestFrames:
    def test_rgb8_1280x1024(self, running, reference):
        rgb = rh.camera_frame(*BIG)
        header = running.header()
        mask_msg, conf_msg = exchange(running, array_to_image(rgb, "rgb8", header))
        assert_matches_reference(mask_msg, conf_msg, header, rgb, reference)
        # The comparison can fail: the same frame with red and blue swapped scores differently.
        swapped = reference.predict(np.ascontiguousarray(rgb[..., ::-1]))[1]
        assert np.abs(swapped - image_to_array(conf_msg)).max() > 1e-2

    @pytest.mark.parametrize(
        ("encoding", "pad", "bigendian"),
        [
            ("rgb8", 6, False),
            ("bgr8", 0, False),
            ("rgba8", 4, False),
            ("bgra8", 0, False),
            ("mono8", 3, False),
            ("mono16", 0, False),
            ("mono16", 2, True),
        ],
    )
    def test_input_encodings(self, running, reference, encoding, pad, bigendian):
        h, w = 120, 160
        rgb = rh.camera_frame(h, w, seed=5)
        if encoding in ("mono8", "mono16"):
            grey = rgb[..., 1]
            pixels = grey if encoding == "mono8" else grey.astype(np.uint16) * 257 + 3
            expected = np.repeat(grey[..., None], 3, axis=2)
        else:
            order = {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgba8": [0, 1, 2], "bgra8": [2, 1, 0]}
            pixels = rgb[..., order[encoding]]
            if encoding.endswith("a8"):
                pixels = np.concatenate([pixels, np.full((h, w, 1), 77, np.uint8)], axis=2)
            expected = rgb
        header = running.header()
        msg = rh.hand_message(pixels, encoding, header, pad=pad, bigendian=bigendian)
        mask_msg, conf_msg = exchange(running, msg)
        assert_matches_reference(mask_msg, conf_msg, header, expected, reference)


class TestOverlay:
    def test_published_only_while_subscribed(self, running):
        rgb = rh.camera_frame(96, 128, seed=9)
        exchange(running, array_to_image(rgb, "rgb8", running.header()))
        processed = diagnostics(running, lambda d: counter(d, "processed") >= 1)
        assert processed["overlays"] == "0"

        sub = running.probe.subscribe(OVERLAY, Image, rh.qos("reliable", 10))
        try:
            assert running.probe.wait_for(lambda: sub.get_publisher_count() > 0, 20)
            header = running.header()
            mask_msg, overlay_msg = exchange(
                running, array_to_image(rgb, "rgb8", header), topics=(MASK, OVERLAY)
            )
            assert overlay_msg.encoding == "rgb8"
            assert (overlay_msg.height, overlay_msg.width) == (96, 128)
            assert rh.stamp_key(overlay_msg.header) == rh.stamp_key(header)
            drawn, mask = image_to_array(overlay_msg), image_to_array(mask_msg) > 0
            np.testing.assert_array_equal(drawn[~mask], rgb[~mask])
            if mask.any():
                assert not np.array_equal(drawn[mask], rgb[mask])
            assert counter(diagnostics(running, lambda d: counter(d, "overlays") >= 1), "overlays")
        finally:
            running.probe.unsubscribe(OVERLAY)


def bad_frames() -> list[tuple[str, str, list[str]]]:
    """(case, rejection kind, words the warning must contain)."""
    return [
        ("yuv422", "encoding", ["unsupported encoding 'yuv422'"]),
        ("short_data", "length", ["bytes but step x height"]),
        ("zero_size", "empty", ["zero-size image 0x0"]),
        ("oversize", "oversize", ["1280x1032", f"max_pixels {MAX_PIXELS}"]),
        ("small_step", "step", ["step 100 is smaller than"]),
    ]


def make_bad(case: str, header) -> Image:
    good = rh.hand_message(rh.camera_frame(40, 50), "rgb8", header)
    if case == "yuv422":
        good.encoding = "yuv422"
    elif case == "short_data":
        good.data = bytes(good.step * good.height - 7)
    elif case == "zero_size":
        good.height = good.width = good.step = 0
        good.data = b""
    elif case == "oversize":
        good = rh.hand_message(np.zeros((1032, 1280), np.uint8), "mono8", header)
    elif case == "small_step":
        good.step = 100
        good.data = bytes(100 * good.height)
    elif case == "float_image":
        good = array_to_image(np.zeros((40, 50), np.float32), "32FC1", header)
    return good


def reject_and_recover(running: Running, reference, case: str, kind: str) -> dict:
    """Sends one bad frame, waits until it is counted, then checks a good frame is answered."""
    before = diagnostics(running)
    running.pub.publish(make_bad(case, running.header()))
    key = f"rejected_{kind}"
    after = diagnostics(running, lambda d: counter(d, key) > counter(before, key))
    assert counter(after, key) == counter(before, key) + 1
    assert counter(after, "processed") == counter(before, "processed")
    rgb = rh.camera_frame(60, 80, seed=11)
    header = running.header()
    mask_msg, conf_msg = exchange(running, array_to_image(rgb, "rgb8", header))
    assert_matches_reference(mask_msg, conf_msg, header, rgb, reference)
    return after


def warnings_for(running: Running, kind: str) -> list[str]:
    return [
        line
        for line in running.node.output().splitlines()
        if "[WARN]" in line and f"'{kind}' rejection" in line
    ]


class TestBadInput:
    @pytest.mark.parametrize(("case", "kind", "words"), bad_frames())
    def test_rejected_with_a_warning_and_the_next_frame_answered(
        self, running, reference, case, kind, words
    ):
        after = reject_and_recover(running, reference, case, kind)
        assert int(after["rejected"]) >= 1
        lines = warnings_for(running, kind)
        assert len(lines) == 1, running.node.output()
        assert f"rejected a frame on {IMAGE}" in lines[0]
        for word in words:
            assert word in lines[0]
        assert running.node.proc.poll() is None

    def test_warnings_are_rate_limited_but_every_frame_counted(self, running, reference):
        for _ in range(3):
            reject_and_recover(running, reference, "short_data", "length")
        reject_and_recover(running, reference, "float_image", "encoding")
        assert len(warnings_for(running, "length")) == 1
        assert len(warnings_for(running, "encoding")) == 1
        assert counter(diagnostics(running), "rejected_length") >= 3


class TestRealTime:
    def test_burst_keeps_only_the_latest_frame(self, running):
        """20 large frames back to back: no backlog, the last one is answered, all accounted."""
        settled = diagnostics(running)
        rgb = rh.camera_frame(*BIG, seed=2)
        headers = [running.header() for _ in range(20)]
        for header in headers:
            running.burst_pub.publish(array_to_image(rgb, "rgb8", header))
        last = rh.stamp_key(headers[-1])
        assert running.probe.wait_for(
            lambda: running.probe.by_stamp(MASK, last) is not None, ANSWER_TIMEOUT
        ), running.node.output()
        keys = {rh.stamp_key(h) for h in headers}
        answered = [
            rh.stamp_key(m.header)
            for m in list(running.probe.messages[MASK])
            if rh.stamp_key(m.header) in keys
        ]
        assert answered == sorted(answered) and answered[-1] == last
        after = diagnostics(
            running,
            lambda d: counter(d, "processed") - counter(settled, "processed") == len(answered),
        )
        received = counter(after, "received") - counter(settled, "received")
        dropped = counter(after, "dropped") - counter(settled, "dropped")
        assert received <= 20
        assert received == len(answered) + dropped
        # Frames the DDS history (keep-last 5) replaced before the executor took them are
        # counted as lost (publication sequence numbers): every frame of the burst accounted for.
        lost = counter(after, "lost_estimated") - counter(settled, "lost_estimated")
        assert received + lost == 20, (received, lost, after)
        assert len(answered) < 20, "every frame of the burst was processed: a backlog"


class TestDiagnostics:
    def test_content(self, running, tiny_models):
        values = diagnostics(running, lambda d: counter(d, "processed") >= 1)
        assert values["_name"] == f"{NODE}: segmentation"
        assert values["backend"] == "onnxruntime"
        assert values["model_path"] == str(tiny_models["onnx"])
        assert values["input_size"] == "64x80"
        assert values["image_topic"] == IMAGE
        assert values["input_qos"] in ("auto (reliable)/5", "auto (best_effort)/5")
        assert values["output_qos"] == "reliable/5"
        assert values["delivery"] == "ok" and values["delivery_warnings"] == "0"
        assert values["transport"] == "raw"
        assert values["fastdds_profile"].endswith("fastdds_large_data.xml")
        assert counter(values, "qos_incompatible") == 0
        assert counter(values, "lost") == max(
            counter(values, "lost_dds"), counter(values, "lost_estimated")
        )
        for key in ("latency_p50_ms", "latency_p95_ms", "input_rate_hz"):
            assert float(values[key]) >= 0.0
        assert float(values["latency_p95_ms"]) >= float(values["latency_p50_ms"]) > 0.0
        assert counter(values, "received") >= counter(values, "processed") + counter(
            values, "rejected"
        )

    def test_best_effort_publisher_matches_the_default_subscription(self, running):
        """The default input_qos (auto) goes best effort when a best-effort publisher joins a
        reliable one, and then matches both (the subscription it replaced is gone once
        discovery has caught up)."""
        best_effort = running.probe.node.create_publisher(Image, IMAGE, rh.qos("sensor_data"))
        try:
            assert running.probe.wait_for(lambda: best_effort.get_subscription_count() == 1, 10)
            assert running.probe.wait_for(lambda: running.pub.get_subscription_count() == 1, 10)
        finally:
            running.probe.node.destroy_publisher(best_effort)


def test_sigint_stops_the_node_cleanly(running):
    assert running.node.stop() == 0
    output = running.node.output()
    assert "Traceback" not in output
    assert re.search(r"segmenting /seg_test/camera/image_raw with onnxruntime", output)
