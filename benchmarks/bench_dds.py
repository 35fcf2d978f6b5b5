"""DDS delivery and latency of camera frames between two processes: QoS x profile x size x rate.

Run: .venv/bin/python benchmarks/bench_dds.py [--frames N] [--json FILE] [--qos-list Q,..]
     [--sides none,sub,pub,both] [--sizes HxW,..] [--rates R,..] [--profile XML]

No node, no inference: a publisher process sends ``--frames`` rgb8 frames (the header stamp is
the wall time at publish) to a subscriber process, FastDDS on one host, for every combination
of QoS (reliable, best effort: publisher and subscription alike, keep-last 5), the shipped
FastDDS profile (config/fastdds_large_data.xml) on neither side, the subscriber's, the
publisher's or both, frame size (640x512, 1280x1024) and rate (10, 30 Hz). The subscriber
counts the frames it receives and their end-to-end latency (receipt in its callback minus the
header stamp). Prints one Markdown row per combination: delivered, p50 and p95 latency (ms).
Not a test: the machine is shared; run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_data.xml"
SIZES = ((512, 640), (1024, 1280))
RATES = (10.0, 30.0)
QOS = ("reliable", "sensor_data")
SIDES = ("none", "sub", "pub", "both")


def _qos(name: str):
    from instrument_seg.ros.qos import qos_profile

    return qos_profile(name, 5)


def publish(qos: str, h: int, w: int, rate: float, frames: int) -> None:
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_dds_pub")
    pub = node.create_publisher(Image, "bench_image", _qos(qos))
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # both sides of the match settled
    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w)
    msg.data = np.random.default_rng(0).integers(0, 255, h * w * 3, np.uint8).tobytes()
    start = time.monotonic()
    for k in range(frames):
        time.sleep(max(0.0, start + k / rate - time.monotonic()))
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        msg.header.frame_id = str(k)
        pub.publish(msg)
    time.sleep(2.0)
    node.destroy_node()
    rclpy.shutdown()


def subscribe(qos: str, timeout: float) -> None:
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_dds_sub")
    latencies: list[float] = []

    def on_image(msg: Image) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies.append((time.time_ns() - stamp) / 1e6)

    sub = node.create_subscription(Image, "bench_image", on_image, _qos(qos))
    deadline = time.monotonic() + timeout
    seen = False
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if sub.get_publisher_count():
            seen = True
        elif seen:
            break
    print("RESULT " + json.dumps(latencies), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def env_for(side: str, which: str, profile: Path = PROFILE) -> dict[str, str]:
    """The environment of one side: no FastDDS profile variable at all (a stock process),
    or ``profile`` in FASTDDS_DEFAULT_PROFILES_FILE."""
    unset = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE",
             "FASTDDS_BUILTIN_TRANSPORTS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    if side in (which, "both"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env


def run_one(
    qos: str, side: str, h: int, w: int, rate: float, frames: int, profile: Path = PROFILE
) -> dict:
    import numpy as np

    me = [sys.executable, __file__]
    timeout = frames / rate + 30
    sub = subprocess.Popen(
        [*me, "--role", "sub", "--qos", qos, "--timeout", str(timeout)],
        env=env_for(side, "sub", profile),
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    subprocess.run(
        [*me, "--role", "pub", "--qos", qos, "--size", f"{h}x{w}", "--rate", str(rate),
         "--frames", str(frames)],
        env=env_for(side, "pub", profile),
        check=True,
        timeout=timeout,
    )
    out, _ = sub.communicate(timeout=timeout)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    lat = json.loads(line[7:])
    p50, p95 = (float(np.percentile(lat, q)) for q in (50, 95)) if lat else (None, None)
    return {"qos": qos, "profile": side, "size": f"{w}x{h}", "rate_hz": rate,
            "published": frames, "delivered": len(lat), "p50_ms": p50, "p95_ms": p95}


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=("pub", "sub"))
    parser.add_argument("--qos", default="reliable")
    parser.add_argument("--size", default="512x640")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--qos-list", default=",".join(QOS), help="e.g. reliable,sensor_data")
    parser.add_argument("--sides", default=",".join(SIDES), help="profile on: none,sub,pub,both")
    parser.add_argument("--sizes", default=",".join(f"{h}x{w}" for h, w in SIZES),
                        help="HxW list, e.g. 4096x4096,2048x2048")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    parser.add_argument("--profile", type=Path, default=PROFILE,
                        help="the FastDDS profile for the 'profile on' sides")
    args = parser.parse_args()
    if args.role == "pub":
        h, w = (int(v) for v in args.size.split("x"))
        return publish(args.qos, h, w, args.rate, args.frames)
    if args.role == "sub":
        return subscribe(args.qos, args.timeout)
    os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 20))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    print("| qos | profile on | size | rate (Hz) | delivered | e2e p50 (ms) | e2e p95 (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    for qos in args.qos_list.split(","):
        for h, w in sizes:
            for rate in (float(r) for r in args.rates.split(",")):
                for side in args.sides.split(","):
                    r = run_one(qos, side, h, w, rate, args.frames, args.profile)
                    rows.append(r)
                    print(f"| {qos} | {side} | {r['size']} | {rate:g} | {r['delivered']}/"
                          f"{r['published']} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} |",
                          flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
