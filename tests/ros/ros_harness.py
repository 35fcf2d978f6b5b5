"""Test-side ROS helpers: a probe node spinning in a thread, and the node under test as a process.

Imported by the ROS test modules after ``pytest.importorskip("rclpy")``; the environment (DDS
domain, discovery range) is set by ``tests/ros/conftest.py`` before any of this runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from ros_paths import (  # noqa: F401 (re-exported)
    EVAL_LAUNCH_FILE,
    EVAL_YAML,
    LAUNCH_FILE,
    REPO,
    SEG_YAML,
    load_launch_module,
)
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from instrument_seg.ros.conversions import ENCODINGS
from instrument_seg.ros.qos import qos_profile

NODE_EXECUTABLE = Path(sys.executable).with_name("segmentation_node")
EVAL_EXECUTABLE = Path(sys.executable).with_name("evaluation_node")
STARTUP_TIMEOUT = 60.0


def hand_message(
    pixels: np.ndarray,
    encoding: str,
    header: Header | None = None,
    pad: int = 0,
    bigendian: bool = False,
    fill: int = 0xAB,
) -> Image:
    """A message built by hand (not by ``array_to_image``), ``pad`` bytes after every row.

    ``pixels`` holds the values; they are written in the byte order ``bigendian`` asks for.
    """
    kind, _ = ENCODINGS[encoding]
    dtype = np.dtype(kind).newbyteorder(">" if bigendian else "<")
    rows = np.ascontiguousarray(pixels.astype(dtype)).reshape(pixels.shape[0], -1).view(np.uint8)
    padded = np.full((rows.shape[0], rows.shape[1] + pad), fill, np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding)
    if header is not None:
        msg.header = header
    msg.is_bigendian = int(bigendian)
    msg.step = padded.shape[1]
    msg.data = padded.tobytes()
    return msg


def stamp_key(header: Header) -> tuple[int, int]:
    return (header.stamp.sec, header.stamp.nanosec)


def make_header(k: int, frame_id: str = "camera_left_optical") -> Header:
    """A header with a stamp unique to ``k`` (seconds 1000 + k, nanoseconds 7 * k)."""
    return Header(stamp=Time(sec=1000 + k, nanosec=7 * k), frame_id=frame_id)


class Probe:
    """A test-side rclpy node with its own context, spun by a background thread.

    Subscriptions store every message they get (by topic); :meth:`wait_for` blocks, bounded in
    time, until a predicate over what arrived holds.
    """

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._cond = threading.Condition()
        self.messages: dict[str, list[Any]] = defaultdict(list)
        self._subscriptions: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown while spinning
            pass

    def subscribe(self, topic: str, msg_type: type, qos: QoSProfile | int = 10) -> Any:
        def store(msg: Any) -> None:
            with self._cond:
                self.messages[topic].append(msg)
                self._cond.notify_all()

        sub = self.node.create_subscription(msg_type, topic, store, qos)
        self._subscriptions[topic] = sub
        return sub

    def unsubscribe(self, topic: str) -> None:
        self.node.destroy_subscription(self._subscriptions.pop(topic))

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """True once ``predicate()`` holds (checked on every arrival and every 0.1 s)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def by_stamp(self, topic: str, key: tuple[int, int]) -> Any | None:
        with self._cond:
            for msg in self.messages[topic]:
                if stamp_key(msg.header) == key:
                    return msg
        return None

    def diagnostics_of(self, node: str) -> list[DiagnosticArray]:
        """The ``/diagnostics`` arrays received from node ``node`` (fully qualified name)."""
        with self._cond:
            arrays: list[DiagnosticArray] = list(self.messages["/diagnostics"])
        return [a for a in arrays if any(s.name == f"{node}: segmentation" for s in a.status)]

    def latest_diagnostics(self, node: str | None = None) -> dict[str, str] | None:
        """Key/values of the newest ``/diagnostics`` status of a segmentation node (``node``:
        its fully qualified name; None: any)."""
        with self._cond:
            arrays: list[DiagnosticArray] = list(self.messages["/diagnostics"])
        for array in reversed(arrays):
            for status in array.status:
                if status.name.endswith(": segmentation") and (
                    node is None or status.name == f"{node}: segmentation"
                ):
                    values = {kv.key: kv.value for kv in status.values}
                    values["_level"] = str(int.from_bytes(status.level, "little"))
                    values["_message"] = status.message
                    values["_name"] = status.name
                    return values
        return None

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


class NodeProcess:
    """A node run as a user runs it: the console script (default ``segmentation_node``),
    ``--ros-args``.

    Its combined stdout/stderr goes to ``log``; :meth:`stop` sends SIGINT and returns the exit
    status.
    """

    def __init__(
        self,
        log: Path,
        namespace: str,
        params: dict[str, Any] | None = None,
        params_file: Path | None = None,
        remappings: Iterable[tuple[str, str]] = (),
        executable: Path = NODE_EXECUTABLE,
    ) -> None:
        args = [str(executable), "--ros-args", "-r", f"__ns:={namespace}"]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        for name, value in (params or {}).items():
            args += ["-p", f"{name}:={_param_text(value)}"]
        for source, target in remappings:
            args += ["-r", f"{source}:={target}"]
        self.args = args
        self.log = log
        self._log_handle = log.open("w")
        self.proc = subprocess.Popen(
            args, stdout=self._log_handle, stderr=subprocess.STDOUT, env=os.environ.copy()
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            time.sleep(0.05)
        return False

    def wait_ready(self, probe: Probe, image_topic: str, output_topic: str) -> None:
        """Blocks until the node's subscription and output publisher match the probe's."""
        publisher = probe.node.create_publisher(Image, image_topic, 1)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        sub = probe._subscriptions[output_topic]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.output()}")
            if publisher.get_subscription_count() and sub.get_publisher_count():
                probe.node.destroy_publisher(publisher)
                return
            time.sleep(0.05)
        raise AssertionError(f"node not ready after {STARTUP_TIMEOUT} s:\n{self.output()}")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._log_handle.close()
                raise AssertionError(
                    f"node ignored SIGINT for {timeout} s:\n{self.output()}"
                ) from None
        self._log_handle.close()
        return self.proc.returncode


def run_node_to_exit(log: Path, namespace: str, params: dict[str, Any], timeout: float = 60.0):
    """Runs the node expecting it to stop by itself; returns (exit status, output)."""
    node = NodeProcess(log, namespace, params)
    try:
        node.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        node.stop()
        raise AssertionError(f"node still running after {timeout} s:\n{node.output()}") from None
    node._log_handle.close()
    return node.proc.returncode, node.output()


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if value in ("", "true", "false") or _numeric(value) else value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_param_text(v) for v in value) + "]"
    return str(value)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def qos(name: str, depth: int = 1) -> QoSProfile:
    """The node's own QoS profiles, for the probe's publishers and subscriptions."""
    return qos_profile(name, depth)


def camera_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An asymmetric uint8 RGB test frame: reddish tissue, a grey bar from the left border."""
    rng = np.random.default_rng(seed)
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[..., 0] = 160 + rng.integers(0, 60, (h, w), dtype=np.uint8)
    rgb[..., 1] = 40 + rng.integers(0, 30, (h, w), dtype=np.uint8)
    rgb[..., 2] = 50 + rng.integers(0, 30, (h, w), dtype=np.uint8)
    rgb[h // 3 : h // 2, : w // 2] = (150, 150, 155)
    return rgb


CAMERA_SCRIPT = """
import sys, time
import numpy as np
import rclpy
from sensor_msgs.msg import Image
from instrument_seg.ros.qos import qos_profile
topic, qos, h, w, rate, seconds = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:5]), *map(
    float, sys.argv[5:7])
rclpy.init()
node = rclpy.create_node("stock_camera")
pub = node.create_publisher(Image, topic, qos_profile(qos, 5))
deadline = time.monotonic() + 60
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
msg = Image(height=h, width=w, encoding="rgb8", step=3 * w)
msg.data = np.random.default_rng(0).integers(0, 255, h * w * 3, np.uint8).tobytes()
start = time.monotonic()
print("PUBLISHING", time.time(), flush=True)
k = 0
while time.monotonic() - start < seconds:
    time.sleep(max(0.0, start + k / rate - time.monotonic()))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
    msg.header.frame_id = "stock_camera"
    pub.publish(msg)
    k += 1
print("PUBLISHED", k, flush=True)
node.destroy_node()
rclpy.shutdown()
"""

#: What a stock camera driver's process has: no FastDDS profile variable at all.
PROFILE_VARIABLES = (
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_BUILTIN_TRANSPORTS",
)


def stock_camera(
    topic: str, qos: str, size: tuple[int, int], rate: float, seconds: float, log: Path
) -> subprocess.Popen:
    """A camera process as a stock driver runs: rgb8 frames of ``size`` (H, W) on ``topic``
    at ``rate`` Hz for ``seconds`` once a subscriber matched, QoS ``qos`` keep-last 5, and no
    FastDDS profile (every profile variable removed from its environment)."""
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
    args = [sys.executable, "-c", CAMERA_SCRIPT, topic, qos, *map(str, size), str(rate)]
    return subprocess.Popen(
        [*args, str(seconds)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
