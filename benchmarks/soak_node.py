"""Soak: segmentation_node fed a 1280x1024 camera stream for minutes; every frame accounted for.

Run: .venv/bin/python benchmarks/soak_node.py [--seconds 180] [--rate 30] [--size 1024x1280]
     [--camera-qos sensor_data] [--no-profile | --stock-camera] [--threads 1] [--model FILE.onnx]
     [--node-log FILE]

A camera process publishes rgb8 frames at ``--rate`` Hz, stamped with the wall time at publish
(``--camera-qos``, keep-last 5; with the shipped FastDDS profile as docs/ros.md tells camera
drivers, unless ``--stock-camera``: no FastDDS profile variable at all in the camera process,
as any stock driver runs, while the node keeps its own default; ``--no-profile``: FastDDS
defaults in every process, the node included). The node runs with its defaults (input_qos
auto, outputs reliable, threads ``--threads``). This process reads ``mask`` reliable (not
``confidence``, so the node skips building it) and ``/diagnostics``. Every 10 s it prints the
node's RSS, its counters, and the end-to-end latency (header stamp to mask receipt here) of that
window. At the end: published (camera) = received (node) + lost, received = processed + dropped
+ rejected + failed, each counted; lost as the node counts it (the RMW's message-lost event and
its per-publisher estimate from sequence numbers or stamps) beside the true figure (published -
received); the node's WARN lines and its first WARN diagnostics, timed from the first frame.

Without ``--model``, the untrained width-16 U-Net at 256x320 of bench_node.py (random weights,
real cost). Not a test: the machine is shared; the printed load average says how shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
NODE = Path(sys.executable).with_name("segmentation_node")
NS = "/soak"


def camera(rate: float, seconds: float, h: int, w: int, qos: str) -> None:
    import rclpy
    from sensor_msgs.msg import Image

    from instrument_seg.ros.qos import qos_profile

    rclpy.init()
    node = rclpy.create_node("soak_camera")
    pub = node.create_publisher(Image, f"{NS}/image", qos_profile(qos, 5))
    while pub.get_subscription_count() == 0:
        time.sleep(0.05)
    time.sleep(1.0)
    rng = np.random.default_rng(0)
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[..., 0] = rng.integers(150, 230, (h, w), dtype=np.uint8)
    rgb[..., 1:] = rng.integers(30, 80, (h, w, 2), dtype=np.uint8)
    rgb[h // 3 : h // 2, : w // 2] = 150
    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w)
    msg.data = rgb.tobytes()
    start = time.monotonic()
    start_wall = time.time()
    n = int(rate * seconds)
    late = 0
    for k in range(n):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late += 1
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        msg.header.frame_id = str(k)
        pub.publish(msg)
    print(f"CAMERA {json.dumps({'published': n, 'late': late, 'start': start_wall})}",
          flush=True)
    time.sleep(3.0)
    node.destroy_node()
    rclpy.shutdown()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--size", default="1024x1280", help="HxW")
    parser.add_argument("--camera-qos", default="sensor_data", choices=("sensor_data", "reliable"))
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--stock-camera", action="store_true",
                        help="no FastDDS profile in the camera process only")
    parser.add_argument("--node-log", type=Path, help="write the node's output here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--camera", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    if args.camera:
        return camera(args.rate, args.seconds, h, w, args.camera_qos)
    os.environ.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 20))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    from instrument_seg.ros.dds_profile import PROFILE_VARIABLE, shipped_profile

    if args.no_profile:
        os.environ.pop(PROFILE_VARIABLE, None)
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "DEFAULT"  # FastDDS defaults, node included
    else:
        os.environ[PROFILE_VARIABLE] = str(shipped_profile())

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from instrument_seg.ros.qos import qos_profile

    tmp = tempfile.TemporaryDirectory()
    if args.model is None:
        from bench_node import make_model

        args.model = make_model(Path(tmp.name))
    node_log = open(args.node_log, "w") if args.node_log else subprocess.DEVNULL  # noqa: SIM115
    node = subprocess.Popen(
        [str(NODE), "--ros-args", "-r", f"__ns:={NS}", "-p", f"model_path:={args.model}",
         "-p", f"threads:={args.threads}"],
        stdout=node_log,
        stderr=subprocess.STDOUT,
    )
    rclpy.init()
    probe = rclpy.create_node("soak_probe")
    lock = threading.Lock()
    masks: list[tuple[float, float]] = []  # (receipt wall time, e2e s)
    diag: dict[str, str] = {}
    warn_levels: list[tuple[float, str]] = []  # (wall time, message) of WARN diagnostics

    def on_mask(msg: Image) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with lock:
            masks.append((now / 1e9, (now - stamp) / 1e9))

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == f"{NS}/segmentation_node: segmentation":
                with lock:
                    diag.clear()
                    diag.update({kv.key: kv.value for kv in status.values})
                    diag["_message"] = status.message
                    if status.level == DiagnosticStatus.WARN:
                        warn_levels.append((time.time(), status.message))

    probe.create_subscription(Image, f"{NS}/mask", on_mask, qos_profile("reliable", 10))
    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    threading.Thread(target=executor.spin, daemon=True).start()
    deadline = time.monotonic() + 120
    while not diag and time.monotonic() < deadline:
        time.sleep(0.2)
    cam_args = [sys.executable, __file__, "--camera", "--seconds", str(args.seconds), "--rate",
                str(args.rate), "--size", args.size, "--camera-qos", args.camera_qos]
    cam_env = dict(os.environ)
    if args.stock_camera:
        for name in (PROFILE_VARIABLE, "FASTRTPS_DEFAULT_PROFILES_FILE",
                     "FASTDDS_BUILTIN_TRANSPORTS"):
            cam_env.pop(name, None)
    cam = subprocess.Popen(cam_args, stdout=subprocess.PIPE, text=True, env=cam_env)
    print(f"load average {os.getloadavg()[0]:.2f}; model {args.model.name}; camera "
          f"{args.camera_qos} {w}x{h} at {args.rate:g} Hz for {args.seconds:g} s; profile "
          f"{cam_env.get(PROFILE_VARIABLE) or 'none'} in the camera, "
          f"{os.environ.get(PROFILE_VARIABLE) or 'none'} in the node", flush=True)
    print("| t (s) | node RSS (MB) | received | processed | dropped | lost (node) | masks "
          "| e2e p50 (ms) | e2e p95 (ms) | node p50 (ms) | diag e2e p50 (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    t0 = time.monotonic()
    seen = 0
    rows = []
    while cam.poll() is None:
        time.sleep(10.0)
        with lock:
            window = [e for _, e in masks[seen:]]
            seen = len(masks)
            d = dict(diag)
        p50, p95 = (np.percentile(window, (50, 95)) * 1000) if window else (np.nan, np.nan)
        row = {"t": time.monotonic() - t0, "rss": rss_mb(node.pid), "masks": seen,
               "p50": p50, "p95": p95, **d}
        rows.append(row)
        print(f"| {row['t']:.0f} | {row['rss']:.0f} | {d.get('received')} | "
              f"{d.get('processed')} | {d.get('dropped')} | {d.get('lost')} | {seen} | "
              f"{p50:.0f} | {p95:.0f} | {d.get('latency_p50_ms')} | "
              f"{d.get('e2e_latency_p50_ms')} |", flush=True)
    out, _ = cam.communicate()
    published = json.loads(out.split("CAMERA ", 1)[1].splitlines()[0])
    time.sleep(3.0)
    with lock:
        d = dict(diag)
        e2e = [e for _, e in masks]
    node.send_signal(2)
    node.wait(20)
    c = {k: int(d.get(k, 0)) for k in ("received", "processed", "dropped", "rejected",
                                        "failed", "lost", "lost_dds", "lost_estimated")}
    true_lost = published["published"] - c["received"]
    print(f"\npublished {published['published']} (camera late on {published['late']}); node: "
          f"received {c['received']} = processed {c['processed']} + dropped {c['dropped']} + "
          f"rejected {c['rejected']} + failed {c['failed']} "
          f"(+ {c['received'] - c['processed'] - c['dropped'] - c['rejected'] - c['failed']} "
          f"in flight); lost before the node: {true_lost} true, {c['lost']} counted "
          f"(DDS event {c['lost_dds']}, stamp-gap estimate {c['lost_estimated']}); masks "
          f"received here {len(e2e)} of {c['processed']} processed")
    if e2e:
        p = np.percentile(e2e, (50, 95)) * 1000
        print(f"e2e (stamp -> mask here) p50 {p[0]:.0f} ms, p95 {p[1]:.0f} ms; node's own p50 "
              f"{d.get('latency_p50_ms')} ms, its e2e p50 {d.get('e2e_latency_p50_ms')} ms")
    rss = [r["rss"] for r in rows]
    if rss:
        print(f"node RSS first {rss[0]:.0f} MB, last {rss[-1]:.0f} MB, max {max(rss):.0f} MB")
    start_wall = published.get("start", 0.0)
    with lock:
        warned = list(warn_levels)
    if warned:
        print(f"first WARN diagnostics {warned[0][0] - start_wall:.1f} s after the camera's "
              f"first frame: {warned[0][1]}")
        explained = [(t, m) for t, m in warned if "do not get through" in m]
        if explained:
            print(f"first explaining WARN diagnostics {explained[0][0] - start_wall:.1f} s after "
                  f"the camera's first frame: {explained[0][1]}")
    if args.node_log:
        node_log.close()
        for line in args.node_log.read_text(errors="replace").splitlines():
            if "[WARN]" in line:
                stamp = float(line.split("[")[2].split("]")[0])
                print(f"node WARN {stamp - start_wall:.1f} s after the camera's first frame: "
                      f"{line}")
    print(f"final diagnostics message: {d.get('_message')}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    executor.shutdown()
    rclpy.try_shutdown()
    tmp.cleanup()


if __name__ == "__main__":
    main()
