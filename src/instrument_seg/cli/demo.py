"""The ROS part of ``make demo``: segmentation node + evaluation node on a bag, as processes.

    python -m instrument_seg.cli.demo --bag demo_out/demo_bag --model demo_out/model.onnx \
        --offline demo_out/eval.json --out demo_out/ros_eval

Starts ``segmentation_node`` and ``evaluation_node`` (the console scripts next to this
interpreter) as two processes talking over real DDS, in lockstep replay, then prints the
evaluation (IoU / Dice, latency) and, with ``--offline``, its per-frame difference to the
``instrument-seg evaluate`` report of the same model on the same bag. Both processes get a
``ROS_DOMAIN_ID`` of their own (claimed with a lock file, as the ROS tests do) and
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, so the demo never talks to another ROS graph on
the machine; both are stopped whatever happens. No rclpy import here: the nodes do the ROS.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from instrument_seg.errors import InputError

NAMESPACE = "/demo"
_DOMAIN_LOCK: list[IO[str]] = []  # the claimed domain's lock file stays open while we run


def claim_ros_domain(first: int = 1, last: int = 101) -> int:
    """Locks ``<tmp>/instrument_seg_ros_domains/<id>.lock`` for the first free id; returns it.

    Used by the demo and by the ROS tests (tests/ros/conftest.py), so a demo and test runs
    never share a domain. Ids 1..101 are the range every DDS vendor maps to valid UDP ports.
    """
    lock_dir = Path(tempfile.gettempdir()) / "instrument_seg_ros_domains"
    lock_dir.mkdir(exist_ok=True)
    span = last - first + 1
    for offset in range(span):
        domain = first + (os.getpid() + offset) % span
        handle = open(lock_dir / f"{domain}.lock", "w")  # noqa: SIM115 (held while running)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _DOMAIN_LOCK.append(handle)
        return domain
    raise InputError(f"all ROS domain ids {first}..{last} are in use by other runs")


def node_environment(domain: int) -> dict[str, str]:
    """The nodes' environment: an own DDS domain, discovery on this machine, one CPU thread."""
    env = dict(os.environ)
    env.pop("ROS_STATIC_PEERS", None)
    env.update(
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def executable(name: str) -> Path:
    """A console script of this installation (next to the running interpreter)."""
    path = Path(sys.executable).with_name(name)
    if not path.is_file():
        raise InputError(
            f"{path} is missing; install the package with its ros extra (make setup, or "
            "pip install -e '.[ros]')"
        )
    return path


class Process:
    """A node process whose output goes to a log file; stopped by SIGINT, then killed."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.args, self.log = args, log
        self._handle = log.open("w")
        self.proc = subprocess.Popen(args, stdout=self._handle, stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_output(self, text: str, timeout: float) -> bool:
        """True once ``text`` is in the log; False on time-out or when the process ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                return text in self.output()
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self._handle.close()
        return self.proc.returncode


def run_demo(
    bag: Path,
    model: Path,
    out: Path,
    threads: int = 1,
    startup_timeout: float = 120.0,
    run_timeout: float = 600.0,
) -> dict[str, Any]:
    """Runs both nodes on ``bag`` in lockstep and returns the evaluation report.

    Raises:
        InputError: missing inputs, a node that fails to start, or no report in time (one
            sentence with the log file to read).
    """
    for path, what in ((bag, "bag"), (model, "model")):
        if not path.exists():
            raise InputError(f"{what} {path} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    domain = claim_ros_domain()
    env = node_environment(domain)
    print(f"demo: ROS_DOMAIN_ID={domain}, namespace {NAMESPACE}, logs in {out}", flush=True)
    ns = ["--ros-args", "-r", f"__ns:={NAMESPACE}"]
    seg = Process(
        [str(executable("segmentation_node")), *ns]
        + ["-p", f"model_path:={model}", "-p", f"threads:={threads}"],
        out / "segmentation_node.log",
        env,
    )
    evaluation = None
    try:
        if not seg.wait_for_output(f"segmenting {NAMESPACE}/image", startup_timeout):
            raise InputError(
                f"segmentation_node did not start within {startup_timeout:g} s (see "
                f"{seg.log}):\n{seg.tail()}"
            )
        evaluation = Process(
            [str(executable("evaluation_node")), *ns]
            + ["-p", f"bag_path:={bag}", "-p", f"output_dir:={out}", "-p", "pace:=lockstep"],
            out / "evaluation_node.log",
            env,
        )
        try:
            status = evaluation.proc.wait(run_timeout)
        except subprocess.TimeoutExpired:
            raise InputError(
                f"evaluation_node did not finish within {run_timeout:g} s (see {evaluation.log})"
            ) from None
        if status != 0:
            raise InputError(
                f"evaluation_node failed with status {status} (see {evaluation.log}):\n"
                f"{evaluation.tail()}"
            )
    finally:
        if evaluation is not None:
            evaluation.stop()
        seg_status = seg.stop()
    if seg_status != 0:
        raise InputError(f"segmentation_node exited with {seg_status} (see {seg.log})")
    return json.loads((out / "report.json").read_text())


def compare(report: dict[str, Any], offline: dict[str, Any]) -> dict[str, float]:
    """Largest per-frame and mean differences (IoU, Dice) between the node's report and an
    ``instrument-seg evaluate`` JSON of the same frames."""
    ref = {(f["sequence"], f["frame"]): f for f in offline["frames"]}
    diffs = {"iou": 0.0, "dice": 0.0, "frames": 0}
    for frame in report["frames"]:
        other = ref.get((frame["sequence"], frame["frame"]))
        if other is None or frame["iou"] is None:
            continue
        diffs["frames"] += 1
        for key in ("iou", "dice"):
            diffs[key] = max(diffs[key], abs(frame[key] - other[key]))
    for key in ("iou", "dice"):
        diffs[f"mean_{key}"] = abs(report[key]["mean"] - offline[key]["mean"])
    return diffs


def against_cues(offline: dict[str, Any], cues: dict[str, Any]) -> str:
    """One line: the trained model's offline IoU next to the colour cue's and the all-cue
    anchor's (``instrument-seg cues --json`` report) on the same video, Otsu on ``a_pos``."""
    combos = cues["combinations"]
    model = 100 * offline["iou"]["mean"]
    parts = [f"model {model:.2f}"]
    for name, label in (("color", "colour cue"), ("+".join(cues["cues"]), "all-cue anchor")):
        if name in combos:
            cue = 100 * combos[name]["a_pos"]["iou"]["mean"]
            parts.append(f"{label} {cue:.2f} ({model - cue:+.2f})")
    return "demo: IoU on the demo video, " + ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m instrument_seg.cli.demo``: returns 0, or 2 after one ``error:`` sentence."""
    parser = argparse.ArgumentParser(prog="python -m instrument_seg.cli.demo", description=__doc__)
    parser.add_argument("--bag", required=True, type=Path, help="bag with ground truth")
    parser.add_argument("--model", required=True, type=Path, help="model for the node (.onnx)")
    parser.add_argument("--out", required=True, type=Path, help="report and log directory")
    parser.add_argument(
        "--offline", type=Path, help="instrument-seg evaluate --json report to compare with"
    )
    parser.add_argument(
        "--cues", type=Path, help="instrument-seg cues --json report: the model against the cues"
    )
    parser.add_argument("--threads", type=int, default=1, help="backend CPU threads (node)")
    args = parser.parse_args(argv)
    try:
        for flag, path in (("--offline", args.offline), ("--cues", args.cues)):
            if path is not None and not path.is_file():
                raise InputError(f"{flag} {path} is not a file")
        started = time.monotonic()
        report = run_demo(args.bag, args.model, args.out, args.threads)
        from instrument_seg.evaluation.report import summary_line

        print(f"demo: evaluation_node (lockstep over DDS): {summary_line(report)}")
        seg = report.get("segmentation_node") or {}
        if seg:
            print(
                f"demo: segmentation_node ran {seg.get('backend', '?')} on "
                f"{seg.get('input_size', '?')} input; its own p50 latency "
                f"{seg.get('latency_p50_ms', '?')} ms (receipt to publish)"
            )
        if args.offline is not None:
            offline = json.loads(args.offline.read_text())
            d = compare(report, offline)
            print(
                f"demo: offline instrument-seg evaluate: IoU {100 * offline['iou']['mean']:.2f} ± "
                f"{100 * offline['iou']['std']:.2f} %, Dice {100 * offline['dice']['mean']:.2f} "
                f"± {100 * offline['dice']['std']:.2f} %; node vs offline over {d['frames']} "
                f"frames: max |ΔIoU| {d['iou']:.1e}, max |ΔDice| {d['dice']:.1e}"
            )
            if args.cues is not None:
                print(against_cues(offline, json.loads(args.cues.read_text())))
        print(
            f"demo: report {args.out / 'report.md'}, figures {args.out / 'iou_over_time.png'} "
            f"and {args.out / 'latency_histogram.png'} ({time.monotonic() - started:.0f} s)"
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
