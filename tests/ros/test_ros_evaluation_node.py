"""evaluation_node end to end: real nodes as processes over real DDS (FastDDS), a real bag.

One segmentation node runs for the whole module, started from ``launch/eval.launch.py``'s own
plan (the repo's ``config/seg.yaml`` + overrides, namespace); each test starts the evaluation
node from the same plan (``config/eval.yaml`` + overrides) as a console-script process and
checks its exit status, its log and the report it wrote. Offline reference: the
``instrument-seg evaluate`` command on the same bag with the same ONNX model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

import ros_harness as rh  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from instrument_seg.data import load_dataset  # noqa: E402
from instrument_seg.data.bags import open_bag, write_bag  # noqa: E402
from instrument_seg.data.synthetic import write_dataset  # noqa: E402
from instrument_seg.ros.conversions import array_to_image  # noqa: E402

NS = "/eval_test"
RUN_TIMEOUT = 90.0
N_FRAMES = 8


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    """Two synthetic sequences x 4 frames at 64x80 with ground truth, as an mcap bag."""
    root = tmp_path_factory.mktemp("eval_data")
    data = write_dataset(root / "data", 2, N_FRAMES // 2, (64, 80), seed=4)
    write_bag(load_dataset(data), root / "synth.bag", rate=20.0)
    return root / "synth.bag"


@pytest.fixture(scope="module")
def offline(bag, tiny_models, tmp_path_factory) -> dict:
    """``instrument-seg evaluate`` of the tiny ONNX model on the bag (the CLI, as a user)."""
    out = tmp_path_factory.mktemp("offline") / "eval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "instrument_seg", "evaluate", "--model", str(tiny_models["onnx"])]
        + ["--data", str(bag), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def plans(bag, tiny_models) -> list[dict]:
    launch = rh.load_launch_module(rh.EVAL_LAUNCH_FILE)
    values = {
        "bag_path": str(bag),
        "model_path": str(tiny_models["onnx"]),
        "threads": "1",  # one thread: the CPU is shared
        "namespace": NS,
    }
    return launch.node_plans(values, str(rh.SEG_YAML), str(rh.EVAL_YAML))


@pytest.fixture(scope="module")
def segmentation(plans, tmp_path_factory):
    plan = plans[0]
    params_file, overrides = plan["parameters"]
    log = tmp_path_factory.mktemp("seg") / "segmentation_node.log"
    node = rh.NodeProcess(
        log, plan["namespace"], {**overrides, "diagnostics_period": 0.5}, params_file
    )
    try:
        assert node.wait_for_output(f"segmenting {NS}/image", rh.STARTUP_TIMEOUT), node.output()
        yield node
    finally:
        status = node.stop()
    assert status == 0, node.output()


def run_evaluation(
    plan: dict,
    tmp_path: Path,
    remappings=(),
    namespace: str | None = None,
    timeout: float = RUN_TIMEOUT,
    **overrides,
) -> tuple[int, str, float, Path]:
    """Runs evaluation_node from ``plan`` to its exit; returns (status, log, seconds, out)."""
    params_file, params = plan["parameters"]
    out = tmp_path / "report"
    params = {**params, "output_dir": str(out), **overrides}
    started = time.monotonic()
    node = rh.NodeProcess(
        tmp_path / "evaluation_node.log",
        namespace or plan["namespace"],
        params,
        params_file,
        remappings,
        executable=rh.EVAL_EXECUTABLE,
    )
    try:
        node.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        node.stop()
        message = f"evaluation_node still running after {timeout} s:\n{node.output()}"
        raise AssertionError(message) from None
    node._log_handle.close()
    return node.proc.returncode, node.output(), time.monotonic() - started, out


def fatal_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "[FATAL]" in line]


def by_frame(report: dict) -> dict[tuple[str, str], dict]:
    return {(f["sequence"], f["frame"]): f for f in report["frames"]}


@pytest.fixture(scope="module")
def compressed_bag(bag, tmp_path_factory) -> Path:
    """The same frames as PNG ``CompressedImage`` messages (lossless), masks mono8."""
    out = tmp_path_factory.mktemp("eval_compressed") / "synth_png.bag"
    write_bag(load_dataset(bag), out, rate=20.0, compressed="png")
    return out


class TestReplay:
    def test_compressed_bag_replays_like_the_raw_one(
        self, segmentation, plans, offline, compressed_bag, tmp_path
    ):
        status, output, _, out = run_evaluation(plans[1], tmp_path, bag_path=str(compressed_bag))
        assert status == 0, output
        report = json.loads((out / "report.json").read_text())
        assert report["settings"]["bag_image_topic"] == "/camera/image_raw/compressed"
        assert report["frames_answered"] == N_FRAMES
        for mine, ref in zip(report["frames"], offline["frames"], strict=True):
            assert (mine["sequence"], mine["frame"]) == (ref["sequence"], ref["frame"])
            assert abs(mine["iou"] - ref["iou"]) <= 1e-6, (mine, ref)

    def test_lockstep_equals_offline_evaluate(self, segmentation, plans, offline, tmp_path):
        status, output, _, out = run_evaluation(plans[1], tmp_path)
        assert status == 0, output
        assert f"evaluation: {N_FRAMES}/{N_FRAMES} frame(s) answered (0 missed)" in output
        # input_qos auto (the default): the mask subscription follows the segmentation node's
        # reliable publisher before the first frame goes out
        switched = f"input_qos auto: mask subscription {NS}/mask is now reliable"
        assert switched in output and output.index(switched) < output.index("evaluation: ")
        report = json.loads((out / "report.json").read_text())
        assert report["settings"]["pace"] == "lockstep"
        assert report["frames_total"] == report["frames_answered"] == N_FRAMES
        # the same frames, in the same order, with the same names as the offline evaluation
        assert [(f["sequence"], f["frame"]) for f in report["frames"]] == [
            (f["sequence"], f["frame"]) for f in offline["frames"]
        ]
        for mine, ref in zip(report["frames"], offline["frames"], strict=True):
            assert mine["status"] == "answered"
            assert abs(mine["iou"] - ref["iou"]) <= 1e-6, (mine, ref)
            assert abs(mine["dice"] - ref["dice"]) <= 1e-6, (mine, ref)
        for key in ("iou", "dice"):
            assert report[key]["n"] == offline[key]["n"] == N_FRAMES
            assert abs(report[key]["mean"] - offline[key]["mean"]) <= 1e-6
            assert abs(report[key]["std"] - offline[key]["std"]) <= 1e-6
        # the comparison can fail: the scores differ from frame to frame and are not trivial
        ious = [f["iou"] for f in offline["frames"]]
        assert 0.0 < min(ious) and max(ious) < 1.0 and np.ptp(ious) > 1e-3
        latency = report["latency_ms"]
        assert latency["n"] == N_FRAMES
        assert 0.0 < latency["p50"] <= latency["p95"] <= latency["max"] < 10_000
        assert report["segmentation_node"]["backend"] == "onnxruntime"
        assert report["segmentation_node"]["model_path"] == plans[0]["parameters"][1]["model_path"]
        markdown = (out / "report.md").read_text()
        assert f"{100 * offline['iou']['mean']:.2f} ± {100 * offline['iou']['std']:.2f} %" in (
            markdown
        )
        for png in ("iou_over_time.png", "latency_histogram.png"):
            data = (out / png).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
            assert f"]({png})" in markdown

    def test_fixed_rate_replay(self, segmentation, plans, offline, tmp_path):
        status, output, _, out = run_evaluation(plans[1], tmp_path, pace="fixed", rate=20)
        assert status == 0, output
        report = json.loads((out / "report.json").read_text())
        assert report["settings"]["pace"] == "fixed" and report["settings"]["rate"] == 20.0
        assert report["frames_total"] == N_FRAMES
        assert report["frames_answered"] + report["frames_missed"] == N_FRAMES
        assert report["frames_answered"] >= 1
        assert report["publish_lag_ms"]["n"] == N_FRAMES
        reference = by_frame(offline)
        for frame in report["frames"]:
            if frame["status"] == "answered":
                ref = reference[(frame["sequence"], frame["frame"])]
                assert abs(frame["iou"] - ref["iou"]) <= 1e-6


class TestListen:
    def test_pairs_an_external_players_ground_truth(
        self, segmentation, plans, offline, bag, tmp_path
    ):
        """A probe plays the bag as ``ros2 bag play`` would (frames and ground truth with
        their recorded headers); the node listens and scores."""
        gt_topic = f"{NS}/played_gt"
        params_file, params = plans[1]["parameters"]
        log = tmp_path / "evaluation_node.log"
        out = tmp_path / "report"
        node = rh.NodeProcess(
            log,
            NS,
            {**params, "mode": "listen", "output_dir": str(out), "idle_timeout": 2.0},
            params_file,
            [("ground_truth", gt_topic)],
            executable=rh.EVAL_EXECUTABLE,
        )
        player = rh.Probe("bag_player")
        try:
            reliable = rh.qos("reliable", 10)
            image_pub = player.node.create_publisher(Image, f"{NS}/image", reliable)
            gt_pub = player.node.create_publisher(Image, gt_topic, reliable)
            assert player.wait_for(
                lambda: (
                    gt_pub.get_subscription_count() >= 1
                    and image_pub.get_subscription_count() >= 2
                ),
                rh.STARTUP_TIMEOUT,
            ), node.output()
            # the node's mask subscription has matched the segmentation node's publisher
            assert node.wait_for_output(f"ready: a segmentation node publishes {NS}/mask", 30)
            # the ground-truth subscription adapts to the reliable player (input_qos auto): give
            # the switch and its match time to complete, or the first frames fall into the race
            time.sleep(1.0)
            stamps = {}
            for seq in open_bag(bag):
                for i in range(len(seq)):
                    header = Header(frame_id=seq.frame_id(i))
                    header.stamp.sec, header.stamp.nanosec = seq.stamp(i)
                    gt = seq.mask(i).astype(np.uint8) * np.uint8(255)
                    gt_pub.publish(array_to_image(gt, "mono8", header))
                    image_pub.publish(array_to_image(seq.image(i), "rgb8", header))
                    stamps[seq.stamp(i)[0] * 1_000_000_000 + seq.stamp(i)[1]] = (
                        seq.name,
                        seq.frame_name(i),
                    )
                    time.sleep(0.25)
            node.proc.wait(RUN_TIMEOUT)
        finally:
            player.close()
            node.stop()
        output = node.output()
        assert node.proc.returncode == 0, output
        report = json.loads((out / "report.json").read_text())
        assert report["settings"]["mode"] == "listen"
        assert report["settings"]["input_qos"] == "auto/5"
        assert f"ground-truth subscription {gt_topic} is now reliable" in output
        assert report["frames_total"] == N_FRAMES
        assert report["frames_answered"] >= N_FRAMES - 2, output
        reference = by_frame(offline)
        for frame in report["frames"]:
            if frame["status"] == "answered":
                ref = reference[stamps[frame["stamp"]]]
                assert abs(frame["iou"] - ref["iou"]) <= 1e-6
                assert abs(frame["dice"] - ref["dice"]) <= 1e-6
                assert frame["latency_ms"] is not None and frame["latency_ms"] > 0


class TestNoAnswer:
    def test_no_segmentation_node(self, plans, tmp_path):
        status, output, seconds, out = run_evaluation(
            plans[1], tmp_path, namespace="/nobody", startup_timeout=3.0, timeout=40
        )
        assert status == 1, output
        (line,) = fatal_lines(output)
        assert (
            "no segmentation node answered within 3 s: nothing subscribes to /nobody/image and "
            "nothing publishes /nobody/mask"
        ) in line
        assert "Traceback" not in output
        assert seconds < 30.0
        assert not out.exists()

    def test_a_node_that_never_answers(self, plans, tmp_path):
        """Something subscribes to image and offers mask but never publishes one."""
        silent = rh.Probe("silent_node")
        try:
            silent.subscribe("/silent/image", Image, rh.qos("reliable", 5))
            silent.node.create_publisher(Image, "/silent/mask", rh.qos("reliable", 5))
            status, output, seconds, out = run_evaluation(
                plans[1], tmp_path, namespace="/silent", mask_timeout=3.0, timeout=40
            )
        finally:
            silent.close()
        assert status == 1, output
        (line,) = fatal_lines(output)
        assert "no segmentation node answered: no mask on /silent/mask for the first frame" in (
            line
        )
        assert seconds < 30.0 and not out.exists()


class TestBadBag:
    def test_missing_bag(self, plans, tmp_path):
        missing = tmp_path / "nope.bag"
        status, output, _, out = run_evaluation(plans[1], tmp_path, bag_path=str(missing))
        assert status == 1
        (line,) = fatal_lines(output)
        assert f"cannot evaluate: bag {missing} does not exist" in line
        assert not out.exists()

    def test_out_of_range_and_unknown_parameters(self, plans, tmp_path):
        status, output, _, out = run_evaluation(
            plans[1], tmp_path, mask_timeout=1.0e300, mask_timout=3.0
        )
        assert status == 1
        (line,) = fatal_lines(output)
        assert "cannot evaluate: parameter mask_timeout is 1e+300; use 0.1 to 3600 s" in line
        warnings = [ln for ln in output.splitlines() if "does not have" in ln]
        assert len(warnings) == 1 and "mask_timout (did you mean mask_timeout?)" in warnings[0]
        assert not out.exists()

    def test_topic_absent(self, plans, tmp_path):
        status, output, _, out = run_evaluation(plans[1], tmp_path, bag_gt_topic="/labels")
        assert status == 1
        (line,) = fatal_lines(output)
        assert "ground-truth topic /labels is not in bag" in line
        assert "/camera/gt_mask (sensor_msgs/msg/Image, 8 messages)" in line
        assert not out.exists()


#: Topic names a bag from elsewhere may hold: a newline that would start a forged log line, a
#: fake log level and an ANSI escape (instrument-seg bag refuses to write them).
HOSTILE_IMAGE_TOPIC = "/cam/image\n[FATAL] \x1b[31mforged"
HOSTILE_GT_TOPIC = "/cam/gt\n[ERROR] forged"


@pytest.fixture(scope="module")
def hostile_bags(tmp_path_factory) -> dict[str, Path]:
    """``frames_only`` (no ground truth) and ``with_truth``, both on :data:`HOSTILE_IMAGE_TOPIC`
    (the ground truth on :data:`HOSTILE_GT_TOPIC`), written past the writer's name check."""
    from instrument_seg.data.bags import writer

    root = tmp_path_factory.mktemp("hostile")
    data = write_dataset(root / "data", 1, 2, (64, 80), seed=5)
    bags = {"frames_only": root / "frames_only.bag", "with_truth": root / "with_truth.bag"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(writer, "_check_topic_name", lambda name, role: name)
        topics = {"image_topic": HOSTILE_IMAGE_TOPIC, "gt_topic": HOSTILE_GT_TOPIC}
        write_bag(load_dataset(data), bags["with_truth"], **topics)
        for masks in data.rglob("masks"):
            for path in masks.iterdir():
                path.unlink()
            masks.rmdir()
        write_bag(load_dataset(data), bags["frames_only"], **topics)
    return bags


def assert_no_forged_line(output: str) -> None:
    """Nothing from the bag's topic names reached the log raw: no line of theirs, no escape."""
    assert "\x1b" not in output
    starts = ("[FATAL] \x1b", "[ERROR] forged")  # a topic name's second line, if unescaped
    forged = [ln for ln in output.splitlines() if ln.startswith(starts)]
    assert not forged, output


class TestBagStringsInTheLog:
    """A bag's topic names reach the log escaped (``imagemsg.safe_name``), on one line."""

    def test_frames_without_ground_truth(self, plans, hostile_bags, tmp_path):
        status, output, _, out = run_evaluation(
            plans[1], tmp_path, bag_path=str(hostile_bags["frames_only"])
        )
        assert status == 1, output
        (line,) = [ln for ln in output.splitlines() if "cannot evaluate" in ln]
        assert "no ground-truth topic to score against" in line
        assert "frames are on '/cam/image\\n[FATAL] \\x1b[31mforged')" in line
        assert_no_forged_line(output)
        assert not out.exists()

    def test_replay_announcement(self, plans, hostile_bags, tmp_path):
        status, output, _, out = run_evaluation(
            plans[1],
            tmp_path,
            namespace="/hostile",
            bag_path=str(hostile_bags["with_truth"]),
            startup_timeout=1.0,
            timeout=40,
        )
        assert status == 1, output  # no segmentation node in /hostile
        (line,) = [ln for ln in output.splitlines() if "replaying 2 frame(s)" in ln]
        assert (
            "('/cam/image\\n[FATAL] \\x1b[31mforged' + '/cam/gt\\n[ERROR] forged') on "
            "/hostile/image"
        ) in line
        assert "no segmentation node answered within 1 s" in output
        assert_no_forged_line(output)
        assert not out.exists()
