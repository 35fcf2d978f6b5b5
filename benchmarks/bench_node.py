"""segmentation_node end to end vs. the backend alone vs. a pass-through node, on this CPU.

Run: .venv/bin/python benchmarks/bench_node.py [--model FILE.onnx] [--frames N]
     [--rate HZ] [--seconds S] [--skip-qos] [--no-profile]

Measured in one run, at 512x640 and 1280x1024 rgb8, over real DDS (FastDDS, loopback):
- backend: ``Segmenter.predict`` in this process (resize, network, resize back, threshold);
- pass-through: a node (this script with ``--passthrough``) that republishes each image as a
  mono8 ``mask`` and a 32FC1 ``confidence`` of the same size without inference: the transport
  and conversion cost of the node's outputs;
- node: the ``segmentation_node`` console script.
Latency is publish (this process) to mask receipt (this process), one frame in flight at a time,
the three measured in turn in every round (load changes on a shared machine hit all alike);
the sustained rate is masks received per second while publishing at ``--rate`` Hz, with the
node's own received/processed/dropped counts (from /diagnostics) for that window. Prints medians
and node / (pass-through + backend) (goal <= 1.1) and node - backend (the transport and
conversion overhead; goal <= 15 ms at 1280x1024). The frames are published reliable (the system
default) into the node's default best-effort subscription, the masks read reliable; every
process uses the shipped FastDDS profile unless --no-profile (the QoS table of docs/ros.md is
benchmarks/bench_dds.py).

The QoS section publishes 1280x1024 and 512x640 rgb8 at ``--rate`` Hz to a pass-through that
answers each received frame with a small reliable ack, with reliable and with best-effort
(sensor_data) QoS at history depth 1 and 5 (publisher and subscription alike), and reports the
fraction of frames delivered and their median latency.

Without ``--model``, an untrained width-16 U-Net (depth 4) at 256x320 (the CPU default size) is
exported to ONNX in a temporary directory: random weights, real cost. Not a test: the machine
is shared, so read the medians together with the printed load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(90 + os.getpid() % 10))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# This process (the camera) and the pass-through use the shipped FastDDS profile, as the node
# does by itself (docs/ros.md); --no-profile: FastDDS's defaults everywhere.
if "--no-profile" in sys.argv:
    os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "DEFAULT"
else:
    from instrument_seg.ros.dds_profile import use_shipped_profile

    use_shipped_profile()

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from instrument_seg.ros.conversions import array_to_image, image_to_rgb8  # noqa: E402
from instrument_seg.ros.qos import qos_profile  # noqa: E402

SIZES = ((512, 640), (1024, 1280))
NODE = Path(sys.executable).with_name("segmentation_node")


# --- the pass-through node (runs in a subprocess) ----------------------------------------------


def run_passthrough(qos: str, depth: int, ack: bool) -> None:
    """Republishes every image as mask (its red channel) and confidence (red / 255), or with
    ``ack`` answers it with its header on ``ack`` (reliable), until SIGINT."""
    rclpy.init()
    node = rclpy.create_node("passthrough")
    profile = qos_profile(qos, depth)
    mask_pub = node.create_publisher(Image, "mask", profile)
    conf_pub = node.create_publisher(Image, "confidence", profile)
    ack_pub = node.create_publisher(Header, "ack", qos_profile("reliable", 100))

    def on_image(msg: Image) -> None:
        if ack:
            ack_pub.publish(msg.header)
            return
        red = image_to_rgb8(msg)[..., 0]
        mask_pub.publish(array_to_image(red, "mono8", msg.header))
        conf_pub.publish(array_to_image(red.astype(np.float32) / 255.0, "32FC1", msg.header))

    node.create_subscription(Image, "image", on_image, profile)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


# --- the measuring side -------------------------------------------------------------------------


class Probe:
    """Publishes frames, stamps them, and times the answers (all on this process's clock)."""

    def __init__(self) -> None:
        rclpy.init()
        self.node = rclpy.create_node("bench_probe")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.sent: dict[tuple[int, int], float] = {}
        self.latency: dict[tuple[int, int], float] = {}
        self.cond = threading.Condition()
        self.counter = 0
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def counts(self, name: str) -> dict[str, int]:
        """received/processed/dropped/rejected of a segmentation node, 1.5 s from now."""
        time.sleep(1.5)
        values = self.diagnostics.get(f"{name}: segmentation", {})
        return {k: int(values.get(k, 0)) for k in ("received", "processed", "dropped")}

    def connect(self, ns: str, qos: str, depth: int, answer: str, answer_type=Image):
        self.latency.clear()
        pub = self.node.create_publisher(Image, f"{ns}/image", qos_profile(qos, depth))
        answer_qos = qos_profile("reliable", 100) if answer == "ack" else qos_profile(qos, 10)

        def on_answer(msg) -> None:
            header = msg if isinstance(msg, Header) else msg.header
            key = (header.stamp.sec, header.stamp.nanosec)
            with self.cond:
                if key in self.sent and key not in self.latency:
                    self.latency[key] = time.perf_counter() - self.sent[key]
                    self.cond.notify_all()

        sub = self.node.create_subscription(answer_type, f"{ns}/{answer}", on_answer, answer_qos)
        deadline = time.monotonic() + 60
        while not (pub.get_subscription_count() and sub.get_publisher_count()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing answers on {ns}")
            time.sleep(0.05)
        time.sleep(0.5)
        return pub, sub

    def publish(self, pub, rgb: np.ndarray) -> tuple[int, int]:
        self.counter += 1
        key = (100000 + self.counter, 0)
        msg = array_to_image(rgb, "rgb8", Header(stamp=Time(sec=key[0], nanosec=0), frame_id="c"))
        with self.cond:
            self.sent[key] = time.perf_counter()
        pub.publish(msg)
        return key

    def wait(self, key, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: key in self.latency, timeout)

    def latency_s(self, pub, rgb: np.ndarray) -> float:
        """Publish-to-answer latency of one frame (resent once if lost after discovery)."""
        for _ in range(2):
            key = self.publish(pub, rgb)
            if self.wait(key, 10.0):
                return self.latency[key]
        raise RuntimeError("no answer within 10 s")

    def sustained(self, pub, rgb: np.ndarray, rate: float, seconds: float):
        """Publishes at ``rate`` Hz for ``seconds``; returns (answers/s, fraction answered,
        median latency ms of the answered)."""
        keys = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for k in range(n):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            keys.append(self.publish(pub, rgb))
        time.sleep(1.0)  # let the last answers come in
        with self.cond:
            answered = [self.latency[k] for k in keys if k in self.latency]
        elapsed = n / rate
        median = 1000 * statistics.median(answered) if answered else float("nan")
        return len(answered) / elapsed, len(answered) / n, median

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.thread.join(timeout=5)
        self.node.destroy_node()
        rclpy.try_shutdown()


def start(args: list[str], ns: str, params: dict[str, str] | None = None) -> subprocess.Popen:
    ros_args = ["--ros-args", "-r", f"__ns:={ns}"]
    for name, value in (params or {}).items():
        ros_args += ["-p", f"{name}:={value}"]
    return subprocess.Popen(
        [*args, *ros_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(2)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_model(out: Path) -> Path:
    import torch

    from instrument_seg.config import default_config
    from instrument_seg.inference.export import export
    from instrument_seg.model.checkpoint import checkpoint_payload, model_kwargs
    from instrument_seg.model.unet import UNet

    config = default_config()
    config["data"]["size"] = [256, 320]
    config["model"].update(encoder="unet", width=16, depth=4, inference_scale=1)  # at 256x320
    torch.manual_seed(0)
    model = UNet(**model_kwargs(config)).eval()
    checkpoint = out / "checkpoint.pt"
    torch.save(checkpoint_payload(model, config), checkpoint)
    export(checkpoint, out / "unet16_256x320.onnx")
    return out / "unet16_256x320.onnx"


def frame(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[..., 0] = rng.integers(150, 230, (h, w), dtype=np.uint8)
    rgb[..., 1:] = rng.integers(30, 80, (h, w, 2), dtype=np.uint8)
    rgb[h // 3 : h // 2, : w // 2] = 150
    return rgb


def interleaved_ms(probe: Probe, segmenter, pubs, rgb: np.ndarray, frames: int):
    """Median ms of backend, pass-through and node over ``frames`` rounds, measured one after
    the other in every round so that load changes on the shared machine hit all three alike."""
    segmenter.predict(rgb)
    for pub in pubs:
        probe.latency_s(pub, rgb)  # warm-up
    rounds = []
    for _ in range(frames):
        t = time.perf_counter()
        segmenter.predict(rgb)
        row = [time.perf_counter() - t]
        for pub in pubs:
            row.append(probe.latency_s(pub, rgb))
            time.sleep(0.02)
        rounds.append(row)
    return [1000 * statistics.median(column) for column in zip(*rounds, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help=".onnx model (default: random width-16 U-Net)")
    parser.add_argument("--frames", type=int, default=15, help="latency samples per case")
    parser.add_argument("--rate", type=float, default=30.0, help="publish rate (Hz)")
    parser.add_argument("--seconds", type=float, default=3.0, help="sustained-rate window (s)")
    parser.add_argument("--skip-qos", action="store_true", help="skip the QoS delivery section")
    parser.add_argument(
        "--no-profile", action="store_true", help="FastDDS defaults instead of the profile"
    )
    parser.add_argument("--passthrough", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ack", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--qos", default="reliable", help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, default=1, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.passthrough:
        run_passthrough(args.qos, args.depth, args.ack)
        return

    tmp = tempfile.TemporaryDirectory()
    model = args.model or make_model(Path(tmp.name))
    me = [sys.executable, __file__, "--passthrough"]
    passthrough = start([*me, "--depth", "5"], "/bench_pass")
    node = start([str(NODE)], "/bench_node", {"model_path": str(model)})
    probe = Probe()
    rows = []
    from instrument_seg.inference import Segmenter

    segmenter = Segmenter.from_path(model)
    try:
        pass_pub, _ = probe.connect("/bench_pass", "reliable", 5, "mask")
        node_pub, _ = probe.connect("/bench_node", "reliable", 5, "mask")
        for h, w in SIZES:
            rgb = frame(h, w)
            backend, pass_ms, node_ms = interleaved_ms(
                probe, segmenter, (pass_pub, node_pub), rgb, args.frames
            )
            pass_rate = probe.sustained(pass_pub, rgb, args.rate, args.seconds)
            before = probe.counts("/bench_node/segmentation_node")
            node_rate = probe.sustained(node_pub, rgb, args.rate, args.seconds)
            after = probe.counts("/bench_node/segmentation_node")
            counts = {k: after[k] - before[k] for k in after}
            rows.append((h, w, backend, pass_ms, node_ms, pass_rate, node_rate, counts))
    finally:
        segmenter.close()
        stop(node)
        stop(passthrough)

    print(f"model {model.name}; publish rate {args.rate:g} Hz; {args.frames} latency frames")
    print(
        f"{'size':>9} {'backend ms':>10} {'pass ms':>8} {'node ms':>8} {'ratio':>6} "
        f"{'overhead':>8} {'pass Hz':>8} {'node Hz':>8} {'node p50 ms':>11}  "
        "node received/processed/dropped"
    )
    for h, w, backend, pass_ms, node_ms, pass_rate, node_rate, counts in rows:
        ratio = node_ms / (pass_ms + backend)
        print(
            f"{h:>4}x{w:<4} {backend:>10.1f} {pass_ms:>8.1f} {node_ms:>8.1f} {ratio:>6.2f} "
            f"{node_ms - backend:>8.1f} "
            f"{pass_rate[0]:>8.1f} {node_rate[0]:>8.1f} {node_rate[2]:>11.1f}  "
            f"{counts['received']}/{counts['processed']}/{counts['dropped']} of "
            f"{int(args.rate * args.seconds)} sent"
        )

    if not args.skip_qos:
        print(f"\nQoS: rgb8 at {args.rate:g} Hz for {args.seconds:g} s to a pass-through (ack)")
        print(f"{'size':>9} {'qos':<12} {'depth':>5} {'delivered':>9} {'median ms':>9}")
        for qos, depth in (
            ("reliable", 1),
            ("reliable", 5),
            ("sensor_data", 1),
            ("sensor_data", 5),
        ):
            ns = f"/bench_qos_{qos}_{depth}"
            proc = start([*me, "--ack", "--qos", qos, "--depth", str(depth)], ns)
            try:
                pub, _ = probe.connect(ns, qos, depth, "ack", Header)
                for h, w in SIZES[::-1]:
                    rate = probe.sustained(pub, frame(h, w), args.rate, args.seconds)
                    print(f"{h:>4}x{w:<4} {qos:<12} {depth:>5} {rate[1]:>9.0%} {rate[2]:>9.1f}")
            finally:
                stop(proc)
    probe.close()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n{os.cpu_count()} CPU(s); load average {load}; numpy {np.__version__}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
