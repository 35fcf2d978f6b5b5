"""segmentation_node as robot stacks use it, over real DDS: REP-2003 QoS defaults, QoS
incompatibilities reported, lifecycle transitions through the real services, compressed input,
untrusted strings in logs, outputs nobody subscribes to skipped, end-to-end latency.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("lifecycle_msgs")

import ros_harness as rh  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from instrument_seg.inference import Segmenter  # noqa: E402
from instrument_seg.ros.conversions import array_to_image, image_to_array  # noqa: E402

BIG = (1024, 1280)


def wall_header(k: int) -> Header:
    """A header stamped with the wall time now (as a camera driver stamps)."""
    sec, nanosec = divmod(time.time_ns(), 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=f"cam{k}")


def node_values(probe: rh.Probe, ns: str) -> dict:
    return probe.latest_diagnostics(f"{ns}/segmentation_node") or {}


def wait_values(probe: rh.Probe, ns: str, predicate, timeout: float = 15.0) -> dict:
    assert probe.wait_for(lambda: predicate(node_values(probe, ns)), timeout), node_values(
        probe, ns
    )
    return node_values(probe, ns)


def count(values: dict, key: str) -> int:
    return int(values.get(key, 0))


@pytest.fixture(scope="module")
def reference(tiny_models):
    with Segmenter.from_path(tiny_models["onnx"]) as segmenter:
        yield segmenter


REP_NS = "/seg_rep"
COMPRESSED_NS = "/seg_compressed"
COMPRESSED_TOPIC = f"{COMPRESSED_NS}/camera/image_raw/compressed"


@pytest.fixture(scope="module")
def defaults_node(tiny_models, tmp_path_factory):
    """A node with nothing but model_path; the probe reads mask reliable (no confidence)."""
    params = {
        "model_path": str(tiny_models["onnx"]),
        "diagnostics_period": 0.25,
        "warning_period": 0.1,  # every forged encoding below gets its own warning
    }
    node = rh.NodeProcess(tmp_path_factory.mktemp("rep") / "node.log", REP_NS, params)
    probe = rh.Probe("seg_rep_probe")
    probe.subscribe(f"{REP_NS}/mask", Image, rh.qos("reliable", 10))
    probe.subscribe("/diagnostics", DiagnosticArray, 50)
    try:
        node.wait_ready(probe, f"{REP_NS}/image", f"{REP_NS}/mask")
        yield node, probe
    finally:
        probe.close()
        node.stop()


@pytest.fixture(scope="module")
def compressed_node(tiny_models, tmp_path_factory):
    """A node with transport compressed, image remapped to camera/image_raw."""
    params = {
        "model_path": str(tiny_models["onnx"]),
        "transport": "compressed",
        "diagnostics_period": 0.25,
    }
    node = rh.NodeProcess(
        tmp_path_factory.mktemp("compressed") / "node.log",
        COMPRESSED_NS,
        params,
        remappings=[("image", "camera/image_raw")],
    )
    probe = rh.Probe("seg_compressed_probe")
    probe.subscribe(f"{COMPRESSED_NS}/mask", Image, rh.qos("reliable", 10))
    probe.subscribe(f"{COMPRESSED_NS}/confidence", Image, rh.qos("reliable", 10))
    probe.subscribe("/diagnostics", DiagnosticArray, 50)
    pub = probe.node.create_publisher(CompressedImage, COMPRESSED_TOPIC, rh.qos("reliable", 5))
    try:
        started = node.wait_for_output(f"segmenting {COMPRESSED_TOPIC} with", rh.STARTUP_TIMEOUT)
        assert started, node.output()
        assert probe.wait_for(lambda: pub.get_subscription_count() == 1, 20)
        yield node, probe, pub
    finally:
        probe.close()
        node.stop()


class TestDefaults:
    """Defaults: a best-effort camera, a reliable consumer of the outputs."""

    NS = REP_NS

    @pytest.fixture
    def running(self, defaults_node):
        return defaults_node

    def test_best_effort_camera_1280x1024_every_frame_answered(self, running):
        node, probe = running
        pub = probe.node.create_publisher(Image, f"{self.NS}/image", rh.qos("sensor_data", 5))
        assert probe.wait_for(lambda: pub.get_subscription_count() == 1, 10)
        mask = f"{self.NS}/mask"
        warm_up = rh.make_header(1)  # until answered: both sides of the match are up
        for _ in range(20):
            pub.publish(array_to_image(rh.camera_frame(64, 80), "rgb8", warm_up))
            if probe.wait_for(lambda: probe.by_stamp(mask, rh.stamp_key(warm_up)), 1.0):
                break
        wait_values(probe, self.NS, lambda v: count(v, "processed") >= 1)
        time.sleep(0.5)  # the diagnostics after the warm-up frames
        before = node_values(probe, self.NS)
        rgb = rh.camera_frame(*BIG, seed=3)
        headers = [wall_header(k) for k in range(10)]
        for header in headers:
            header.stamp.sec, header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
            pub.publish(array_to_image(rgb, "rgb8", header))
            time.sleep(0.2)  # 5 Hz: a rate the tiny model keeps up with
        keys = [rh.stamp_key(h) for h in headers]
        assert probe.wait_for(lambda: all(probe.by_stamp(mask, k) for k in keys), 40), (
            sum(1 for k in keys if probe.by_stamp(mask, k)),
            node_values(probe, self.NS),
            node.output(),
        )
        first = probe.by_stamp(mask, keys[0])
        assert (first.height, first.width, first.encoding) == (*BIG, "mono8")
        values = wait_values(
            probe,
            self.NS,
            lambda v: count(v, "processed") - count(before, "processed") >= 10,
        )
        assert count(values, "received") - count(before, "received") == 10
        assert count(values, "lost_dds") == 0  # (the stamp-gap estimate is jitter-sensitive)
        assert float(values["e2e_latency_p50_ms"]) >= float(values["latency_p50_ms"]) > 0
        assert float(values["e2e_latency_p50_ms"]) < 5000

    def test_unsubscribed_confidence_is_not_built(self, running):
        _, probe = running
        values = wait_values(probe, self.NS, lambda v: count(v, "processed") >= 1)
        assert count(values, "outputs_skipped") >= count(values, "processed")

    def test_forged_log_lines_are_escaped_and_cut(self, running):
        node, probe = running
        pub = probe.node.create_publisher(Image, f"{self.NS}/image", rh.qos("reliable", 5))
        assert probe.wait_for(lambda: pub.get_subscription_count() == 1, 10)
        forged = "bad\n[FATAL] [1.0] [segmentation_node]: forged \x1b[31mred"
        for k, encoding in enumerate((forged, "x" * 100_000)):
            msg = rh.hand_message(rh.camera_frame(8, 8), "rgb8", rh.make_header(1))
            msg.encoding = encoding
            for _ in range(20):  # re-sent until counted: the first may precede the match
                pub.publish(msg)
                if probe.wait_for(
                    lambda n=k: count(node_values(probe, self.NS), "rejected_encoding") > n, 1.0
                ):
                    break
            time.sleep(0.2)  # past warning_period
        wait_values(probe, self.NS, lambda v: count(v, "rejected_encoding") >= 2)
        output = node.output()
        assert "[FATAL]" not in [line[:7] for line in output.splitlines()]
        assert "\x1b" not in output
        assert max(len(line) for line in output.splitlines()) < 1000
        warnings = [line for line in output.splitlines() if "unsupported encoding" in line]
        forged_line = next(line for line in warnings if "'bad\\n[FATAL]" in line)
        assert "\\x1b[" in forged_line
        long_line = next(line for line in warnings if "(100000 characters)" in line)
        assert len(long_line) < 400
        for line in (forged_line, long_line):
            assert "[WARN]" in line
            assert "(accepted: rgb8, bgr8, rgba8, bgra8, mono8, mono16)" in line


def test_incompatible_qos_counted_and_logged_once(tiny_models, tmp_path):
    """input_qos reliable against a best-effort camera, output_qos best effort against a
    reliable consumer: both counted in /diagnostics and logged once with both policies."""
    ns = "/seg_incompatible"
    params = {
        "model_path": str(tiny_models["onnx"]),
        "input_qos": "reliable",
        "output_qos": "sensor_data",
        "diagnostics_period": 0.25,
    }
    node = rh.NodeProcess(tmp_path / "node.log", ns, params)
    probe = rh.Probe("seg_incompatible_probe")
    try:
        probe.subscribe("/diagnostics", DiagnosticArray, 50)
        assert node.wait_for_output("segmenting", rh.STARTUP_TIMEOUT), node.output()
        probe.node.create_publisher(Image, f"{ns}/image", rh.qos("sensor_data", 5))
        probe.subscribe(f"{ns}/mask", Image, rh.qos("reliable", 5))
        values = wait_values(probe, ns, lambda v: count(v, "qos_incompatible") >= 2, 20)
        assert values["_level"] == "1" and "incompatible QoS" in values["_message"]
        time.sleep(1.0)
        lines = [line for line in node.output().splitlines() if "incompatible QoS on" in line]
        assert len(lines) == 2, node.output()
        image_line = next(line for line in lines if f"{ns}/image:" in line)
        assert "subscription is reliable" in image_line and "best_effort" in image_line
        mask_line = next(line for line in lines if f"{ns}/mask:" in line)
        assert "publisher is best_effort" in mask_line and "reliable" in mask_line
    finally:
        probe.close()
        assert node.stop() == 0


class TestLifecycle:
    NS = "/seg_lifecycle"

    def call(self, probe: rh.Probe, service: str, srv_type, request):
        client = probe.node.create_client(srv_type, f"{self.NS}/segmentation_node/{service}")
        assert client.wait_for_service(timeout_sec=30)
        future = client.call_async(request)
        assert probe.wait_for(future.done, 60)
        probe.node.destroy_client(client)
        return future.result()

    def state(self, probe: rh.Probe) -> int:
        return self.call(probe, "get_state", GetState, GetState.Request()).current_state.id

    def change(self, probe: rh.Probe, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.call(probe, "change_state", ChangeState, request).success

    def test_transitions_through_the_services(self, tiny_models, tmp_path, reference):
        params = {"model_path": str(tiny_models["onnx"]), "autostart": False}
        node = rh.NodeProcess(tmp_path / "node.log", self.NS, params)
        probe = rh.Probe("seg_lifecycle_probe")
        image, mask = f"{self.NS}/image", f"{self.NS}/mask"
        try:
            sub = probe.subscribe(mask, Image, rh.qos("reliable", 5))
            pub = probe.node.create_publisher(Image, image, rh.qos("reliable", 5))
            assert self.state(probe) == State.PRIMARY_STATE_UNCONFIGURED
            assert pub.get_subscription_count() == 0
            assert self.change(probe, Transition.TRANSITION_CONFIGURE)
            assert self.state(probe) == State.PRIMARY_STATE_INACTIVE
            time.sleep(0.5)
            assert pub.get_subscription_count() == 0 and sub.get_publisher_count() == 0
            for cycle in range(2):
                assert self.change(probe, Transition.TRANSITION_ACTIVATE)
                assert self.state(probe) == State.PRIMARY_STATE_ACTIVE
                assert probe.wait_for(
                    lambda: pub.get_subscription_count() == 1 and sub.get_publisher_count(), 20
                )
                rgb = rh.camera_frame(60, 80, seed=cycle)
                header = rh.make_header(100 + cycle)
                key = rh.stamp_key(header)
                for _ in range(10):
                    pub.publish(array_to_image(rgb, "rgb8", header))
                    if probe.wait_for(lambda k=key: probe.by_stamp(mask, k) is not None, 2.0):
                        break
                answer = probe.by_stamp(mask, key)
                assert answer is not None, node.output()
                expected, _ = reference.predict(rgb)
                assert np.mean(image_to_array(answer) == expected) > 0.999
                assert self.change(probe, Transition.TRANSITION_DEACTIVATE)
                assert self.state(probe) == State.PRIMARY_STATE_INACTIVE
                assert probe.wait_for(
                    lambda: pub.get_subscription_count() == 0 and not sub.get_publisher_count(),
                    20,
                )
            assert self.change(probe, Transition.TRANSITION_CLEANUP)
            assert self.state(probe) == State.PRIMARY_STATE_UNCONFIGURED
            assert self.change(probe, Transition.TRANSITION_CONFIGURE)  # the model loads again
            assert self.state(probe) == State.PRIMARY_STATE_INACTIVE
        finally:
            probe.close()
            assert node.stop() == 0
        assert "Traceback" not in node.output()

    def test_configure_failure_leaves_it_unconfigured(self, tmp_path):
        params = {"model_path": "/nonexistent/model.onnx", "autostart": False}
        node = rh.NodeProcess(tmp_path / "bad.log", self.NS + "_bad", params)
        probe = rh.Probe("seg_lifecycle_bad_probe")
        ns, self.NS = self.NS, self.NS + "_bad"
        try:
            assert not self.change(probe, Transition.TRANSITION_CONFIGURE)
            assert self.state(probe) == State.PRIMARY_STATE_UNCONFIGURED
            assert node.wait_for_output("does not exist", 5), node.output()
            assert node.proc.poll() is None  # a managed node stays up for the next try
        finally:
            self.NS = ns
            probe.close()
            assert node.stop() == 0


class TestCompressed:
    NS = COMPRESSED_NS
    TOPIC = COMPRESSED_TOPIC

    @pytest.fixture
    def running(self, compressed_node):
        return compressed_node

    @pytest.mark.parametrize("ext", [".png", ".jpg"])
    def test_frames_answered_as_the_decoded_image(self, running, reference, ext):
        node, probe, pub = running
        rgb = rh.camera_frame(120, 160, seed=7)
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]))
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        if ext == ".png":
            np.testing.assert_array_equal(decoded, rgb)
        header = rh.make_header(200 if ext == ".png" else 201)
        msg = CompressedImage(header=header, format=f"rgb8; {ext[1:]} compressed bgr8")
        msg.data = buf.tobytes()
        key = rh.stamp_key(header)
        conf = f"{self.NS}/confidence"
        for _ in range(10):
            pub.publish(msg)
            if probe.wait_for(lambda: probe.by_stamp(conf, key) is not None, 2.0):
                break
        answer = probe.by_stamp(conf, key)
        assert answer is not None, node.output()
        assert (answer.height, answer.width) == (120, 160)
        assert answer.header.frame_id == "camera_left_optical"
        _, expected = reference.predict(np.ascontiguousarray(decoded))
        np.testing.assert_allclose(image_to_array(answer), expected, atol=1e-5)

    def test_garbage_is_rejected(self, running):
        _, probe, pub = running
        msg = CompressedImage(header=rh.make_header(300), format="jpeg")
        msg.data = b"GIF89a not a jpeg"
        pub.publish(msg)
        values = wait_values(probe, self.NS, lambda v: count(v, "rejected_compressed") >= 1)
        assert values["transport"] == "compressed" and values["image_topic"] == self.TOPIC
