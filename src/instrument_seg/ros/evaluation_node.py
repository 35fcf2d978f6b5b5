"""evaluation_node: scores a running segmentation node against a bag's ground truth.

Two modes (parameter ``mode``):

- **replay**: reads ``bag_path`` (frames and ground truth, see
  :mod:`instrument_seg.data.bags`), publishes each frame on ``image`` with its recorded header,
  and pairs the ``mask`` answers by header stamp. ``pace``: ``lockstep`` publishes the next
  frame only once the previous frame's mask arrived (or ``mask_timeout`` passed): every frame
  is segmented, so the scores equal ``instrument-seg evaluate`` of the same model on the bag;
  ``recorded`` publishes at the bag's own timing and ``fixed`` at ``rate`` Hz, whatever the
  segmentation node keeps up with (frames it drops are reported as missed).
- **listen**: an external ``ros2 bag play`` publishes the frames (remap ``image`` to them, for
  latency) and the ground truth (remap ``ground_truth``); masks on ``mask`` are paired with the
  ground truth by stamp. The run ends ``idle_timeout`` s after the last ground truth, or on
  SIGINT.

Either way the node writes ``report.json``, ``report.md``, ``iou_over_time.png`` and
``latency_histogram.png`` to ``output_dir`` (``evaluation.report``: per-frame IoU/Dice
with ``evaluation.metrics``, mean ± std, latency p50/p95/max, jitter, missed frames),
logs one summary line and exits 0. It also records the segmentation node's ``/diagnostics``
(backend, model, drops) in the report. No segmentation node within ``startup_timeout``, no
answer to the first frame within ``mask_timeout``, or a bad parameter or bag: one fatal line
and exit status 1; it never waits longer than its time-outs.

QoS as the segmentation node: ``input_qos`` (default auto: reliable while every publisher offers
reliable, else best effort, re-decided as publishers come and go) for the mask, ground-truth and
(listen) image subscriptions, ``output_qos`` (default reliable, REP-2003) for the replayed
frames; :func:`main` uses the shipped FastDDS profile
(:mod:`instrument_seg.ros.dds_profile`) unless the environment names one, so replayed
camera-sized frames reach a best-effort subscription.

This file only wires ROS to :class:`instrument_seg.evaluation.report.StreamScorer`; it holds no
scoring.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from instrument_seg.errors import InputError
from instrument_seg.imagemsg import safe_name
from instrument_seg.ros.conversions import (
    ImageFormatError,
    array_to_image,
    image_to_array,
    stamp_ns,
)
from instrument_seg.ros.dds_profile import use_shipped_profile
from instrument_seg.ros.params import (
    EVALUATION,
    MAX_CONSECUTIVE_MISSES,
    declare,
    evaluation_settings,
    unknown_parameters,
    unknown_warning,
    values_of,
)
from instrument_seg.ros.qos import AdaptiveSubscription, qos_profile

NODE_NAME = "evaluation_node"
RESEND_PERIOD = 2.0  # lockstep: re-publish an unanswered frame this often (discovery races)
MASK_DEPTH = 100  # keep-last depth of the mask subscription: masks are small, never lose one
POLL = 0.05
DIAGNOSTICS_WAIT = 1.5  # s: the segmentation node publishes /diagnostics at 1 Hz by default
SETTLE = 0.5  # paced replay: seconds between discovery and the first frame
QOS_POLL = 0.25  # s between two looks at the publishers of the subscriptions (input_qos auto)


def reception_time(info: MessageInfo) -> float:
    """When the RMW received a message (system clock, s): independent of when the executor got
    to its callback; the current time where the RMW gives none."""
    received = int(info.get("received_timestamp") or 0)
    return received / 1e9 if received > 0 else time.time()


class NoAnswer(Exception):
    """The segmentation node did not show up or did not answer (one sentence)."""


class Interrupted(Exception):
    """SIGINT/SIGTERM or an external shutdown during the run."""


class EvaluationNode(Node):
    """Wires the bag, topics and diagnostics around a
    :class:`~instrument_seg.evaluation.report.StreamScorer` (see the module docstring).

    Construct, then :meth:`run` from the main thread while an executor spins the node in
    another thread; :meth:`run` returns the report.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        problems = declare(self, EVALUATION)
        unknown = unknown_parameters(getattr(self, "_parameter_overrides", {}), EVALUATION)
        if unknown:
            self.get_logger().warning(unknown_warning(NODE_NAME, unknown, EVALUATION))
        if problems:
            raise InputError(next(iter(problems.values())))
        self.settings = evaluation_settings(values_of(self, EVALUATION))
        from instrument_seg.evaluation.report import StreamScorer  # the algorithm side: no ROS

        self.scorer = StreamScorer()
        self._diagnostics: dict[str, str] = {}
        self._diagnostics_at: float | None = None
        self._diag_lock = threading.Lock()
        self._bad_masks = 0
        self._last_gt_at: float | None = None
        s = self.settings
        self._mask_sub = AdaptiveSubscription(
            self, Image, "mask", self._on_mask, s.input_qos, MASK_DEPTH, what="mask subscription"
        )
        self._adaptive = [self._mask_sub]
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._image_pub = None
        self._gt_sub = self._image_sub = None
        if s.mode == "replay":
            self._image_pub = self.create_publisher(
                Image, "image", qos_profile(s.output_qos, s.queue_depth)
            )
        else:
            self._gt_sub = AdaptiveSubscription(
                self,
                Image,
                "ground_truth",
                self._on_ground_truth,
                s.input_qos,
                s.queue_depth,
                what="ground-truth subscription",
            )
            self._image_sub = AdaptiveSubscription(
                self, Image, "image", self._on_image, s.input_qos, s.queue_depth,
                what="image subscription",
            )
            self._adaptive += [self._gt_sub, self._image_sub]
        if s.input_qos == "auto":
            self.create_timer(QOS_POLL, self._poll_qos)

    def _poll_qos(self) -> None:
        """input_qos auto (executor thread): each subscription follows its publishers."""
        for sub in self._adaptive:
            sub.poll()

    # --- callbacks (executor thread) -------------------------------------------------------

    def _on_mask(self, msg: Image, info: MessageInfo) -> None:
        received_at = reception_time(info)
        try:
            mask = image_to_array(msg)
        except ImageFormatError as exc:
            self._bad_masks += 1
            self.get_logger().warning(f"unreadable mask on {self._mask_sub.topic_name}: {exc}")
            return
        if mask.ndim != 2:
            self._bad_masks += 1
            return
        self.scorer.answer(stamp_ns(msg.header), mask, received_at)

    def _on_ground_truth(self, msg: Image) -> None:
        now = time.monotonic()
        try:
            gt = image_to_array(msg)
        except ImageFormatError as exc:
            self.get_logger().warning(
                f"unreadable ground truth on {self._gt_sub.topic_name}: {exc}"
            )
            return
        if gt.ndim == 3:
            gt = gt.max(axis=2)
        stamp = stamp_ns(msg.header)
        name = f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d}"
        self.scorer.expect(stamp, gt > 0, "stream", name, now=now)
        self._last_gt_at = now

    def _on_image(self, msg: Image, info: MessageInfo) -> None:
        self.scorer.sent(stamp_ns(msg.header), reception_time(info))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": segmentation"):
                with self._diag_lock:
                    self._diagnostics = {"name": status.name, "message": status.message}
                    self._diagnostics.update({kv.key: kv.value for kv in status.values})
                    self._diagnostics_at = time.time()

    # --- run (main thread) -----------------------------------------------------------------

    def _check_alive(self) -> None:
        if not self.context.ok():
            raise Interrupted()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check_alive()
            time.sleep(min(left, POLL))

    def run(self) -> dict[str, Any]:
        """Runs the evaluation to the end and returns the report (see module docstring).

        Raises:
            InputError: a bad bag or parameter.
            NoAnswer: no segmentation node within the time-outs.
            Interrupted: shutdown requested while replaying.
        """
        started = time.monotonic()
        if self.settings.mode == "replay":
            settings = self._replay()
        else:
            settings = self._listen()
        self.scorer.finish()
        duration = time.monotonic() - started
        self._await_diagnostics()
        return self._report(settings, duration)

    def _await_diagnostics(self, timeout: float = DIAGNOSTICS_WAIT) -> None:
        """Waits (bounded) for the segmentation node's /diagnostics published after its last
        answer, so the report holds its final counts, backend and model."""
        last = self.scorer.last_answer_at
        deadline = time.monotonic() + timeout
        while last is not None and time.monotonic() < deadline and self.context.ok():
            with self._diag_lock:
                fresh = self._diagnostics_at is not None and self._diagnostics_at > last
            if fresh:
                return
            time.sleep(POLL)

    def _wait_for_segmentation_node(self) -> None:
        """Until a node subscribes to ``image`` and publishes ``mask`` (bounded)."""
        s = self.settings
        deadline = time.monotonic() + s.startup_timeout
        image, mask = self._image_pub.topic_name, self._mask_sub.topic_name
        while time.monotonic() < deadline:
            self._check_alive()
            if (
                self._image_pub.get_subscription_count()
                and self._mask_sub.get_publisher_count()
                and self._mask_sub.settled()  # auto: the QoS switch happens before frame one
            ):
                return
            time.sleep(POLL)
        missing = []
        if not self._image_pub.get_subscription_count():
            missing.append(f"nothing subscribes to {image}")
        if not self._mask_sub.get_publisher_count():
            missing.append(f"nothing publishes {mask}")
        raise NoAnswer(
            f"no segmentation node answered within {s.startup_timeout:g} s: "
            f"{' and '.join(missing)} (start segmentation_node in this namespace, or remap "
            "image and mask; a reliable subscription does not match a best-effort publisher)"
        )

    def _replay(self) -> dict[str, Any]:
        from instrument_seg.data.bags import open_bag

        s = self.settings
        sequences = open_bag(s.bag_path, s.bag_image_topic, s.bag_gt_topic)
        index = sequences[0].index
        # the bag's topic names are untrusted: logged escaped (the report keeps them as they are)
        image_topic, gt_topic = safe_name(index.image_topic), safe_name(index.gt_topic)
        if not index.has_masks:
            raise InputError(
                f"bag {s.bag_path} has no ground-truth topic to score against (set bag_gt_topic; "
                f"frames are on {image_topic})"
            )
        frames = [(seq, i) for seq in sequences for i in range(len(seq))]
        if s.max_frames:
            frames = frames[: s.max_frames]
        logger = self.get_logger()
        logger.info(
            f"replaying {len(frames)} frame(s) of {s.bag_path} ({image_topic} + {gt_topic}) "
            f"on {self._image_pub.topic_name}, pace {s.pace}"
            + (f" {s.rate:g} Hz" if s.pace == "fixed" else "")
            + f"; masks from {self._mask_sub.topic_name}"
        )
        self._wait_for_segmentation_node()
        log0 = frames[0][0].log_time(frames[0][1])
        t0 = time.monotonic() + (SETTLE if s.pace != "lockstep" else 0.0)
        last_expire = time.monotonic()
        resent = 0
        self._misses_in_a_row = 0
        for k, (seq, i) in enumerate(frames):
            sec, nanosec = seq.stamp(i)
            header = Header(frame_id=seq.frame_id(i))
            header.stamp.sec, header.stamp.nanosec = sec, nanosec
            msg = array_to_image(seq.image(i), "rgb8", header)
            gt = seq.mask(i)
            stamp = sec * 1_000_000_000 + nanosec
            scheduled = None
            if s.pace == "recorded":
                scheduled = t0 + (seq.log_time(i) - log0) / 1e9
            elif s.pace == "fixed":
                scheduled = t0 + k / s.rate
            if scheduled is not None:
                self._sleep(scheduled - time.monotonic())
            self._check_alive()
            published = time.monotonic()
            lag = None if scheduled is None else 1000.0 * (published - scheduled)
            result = self.scorer.expect(
                stamp, gt, seq.name, seq.frame_name(i), time.time(), lag, now=published
            )
            self._image_pub.publish(msg)
            if s.pace == "lockstep":
                resent += self._await_lockstep(result.stamp, msg, k, published)
            elif time.monotonic() - last_expire > 1.0:
                self.scorer.expire(time.monotonic() - s.mask_timeout)
                last_expire = time.monotonic()
        deadline = time.monotonic() + s.mask_timeout
        while not self.scorer.wait_all(POLL * 4) and time.monotonic() < deadline:
            self._check_alive()
        if not self.scorer.counts()["answered"]:
            raise NoAnswer(
                f"no segmentation node answered: none of the {len(frames)} frame(s) published "
                f"on {self._image_pub.topic_name} got a mask on {self._mask_sub.topic_name} "
                f"within {s.mask_timeout:g} s"
            )
        return {
            "mode": "replay",
            "pace": s.pace,
            **({"rate": s.rate} if s.pace == "fixed" else {}),
            "bag": s.bag_path,
            "bag_image_topic": index.image_topic,
            "bag_gt_topic": index.gt_topic,
            "image_topic": self._image_pub.topic_name,
            "mask_topic": self._mask_sub.topic_name,
            "input_qos": f"{s.input_qos}/{s.queue_depth}",
            "output_qos": f"{s.output_qos}/{s.queue_depth}",
            "mask_timeout_s": s.mask_timeout,
            "resent": resent,
        }

    def _await_lockstep(self, stamp: int, msg: Image, k: int, sent_at: float) -> int:
        """Waits for the mask of the frame just published, re-publishing it every
        :data:`RESEND_PERIOD` s (a frame published right after discovery can be lost); returns
        how many times it was re-published."""
        s = self.settings
        deadline = sent_at + s.mask_timeout
        resent = 0
        next_resend = sent_at + RESEND_PERIOD
        while True:
            wait = min(deadline, next_resend) - time.monotonic()
            if self.scorer.wait_answered(stamp, max(0.0, min(wait, POLL * 4))):
                self._misses_in_a_row = 0
                return resent
            self._check_alive()
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_resend:
                self._image_pub.publish(msg)
                resent += 1
                next_resend = now + RESEND_PERIOD
        self.scorer.expire(math.inf)
        if not self.scorer.counts()["answered"] and k == 0:
            raise NoAnswer(
                f"no segmentation node answered: no mask on {self._mask_sub.topic_name} for the "
                f"first frame within {s.mask_timeout:g} s (mask_timeout)"
            )
        self._misses_in_a_row += 1
        if self._misses_in_a_row >= MAX_CONSECUTIVE_MISSES:
            raise NoAnswer(
                f"the segmentation node stopped answering: no mask on "
                f"{self._mask_sub.topic_name} for {self._misses_in_a_row} frames in a row "
                f"(up to frame {k}) within {s.mask_timeout:g} s each"
            )
        self.get_logger().warning(
            f"no mask for frame {k} within {s.mask_timeout:g} s; counted as missed"
        )
        return resent

    def _listen(self) -> dict[str, Any]:
        s = self.settings
        gt_topic, mask_topic = self._gt_sub.topic_name, self._mask_sub.topic_name
        self.get_logger().info(
            f"listening: ground truth on {gt_topic}, frames on {self._image_sub.topic_name}, "
            f"masks on {mask_topic}"
        )
        deadline = time.monotonic() + s.startup_timeout
        announced = False
        while self._last_gt_at is None:
            self._check_alive()
            settled = all(sub.settled() for sub in self._adaptive)
            if not announced and self._mask_sub.get_publisher_count() and settled:
                announced = True  # a player started from now on loses no mask to discovery
                self.get_logger().info(f"ready: a segmentation node publishes {mask_topic}")
            if time.monotonic() > deadline:
                raise NoAnswer(
                    f"no ground truth arrived on {gt_topic} within {s.startup_timeout:g} s "
                    "(is ros2 bag play running, with its mask topic remapped to ground_truth?)"
                )
            time.sleep(POLL)
        try:
            while time.monotonic() - self._last_gt_at < s.idle_timeout:
                self._check_alive()
                self.scorer.expire(time.monotonic() - s.mask_timeout)
                time.sleep(POLL * 4)
        except (Interrupted, KeyboardInterrupt):
            self.get_logger().info("interrupted: reporting what arrived so far")
        self.scorer.wait_all(min(s.mask_timeout, 2.0) if self.context.ok() else 0.0)
        counts = self.scorer.counts()
        if counts["frames"] and not (counts["answered"] + counts["pending"]):
            raise NoAnswer(
                f"no segmentation node answered: no mask on {mask_topic} for any of the "
                f"{counts['frames']} ground-truth frame(s) on {gt_topic}"
            )
        return {
            "mode": "listen",
            "gt_topic": gt_topic,
            "image_topic": self._image_sub.topic_name,
            "mask_topic": mask_topic,
            "input_qos": f"{s.input_qos}/{s.queue_depth}",
            "output_qos": f"{s.output_qos}/{s.queue_depth}",
            "mask_timeout_s": s.mask_timeout,
        }

    def _report(self, settings: dict[str, Any], duration: float) -> dict[str, Any]:
        from instrument_seg.evaluation.report import build_report

        scorer = self.scorer
        answered = [r for r in scorer.results if r.status == "answered"]
        span = (
            (scorer.last_answer_at - scorer.first_answer_at)
            if scorer.first_answer_at is not None
            else 0.0
        )
        with self._diag_lock:
            diagnostics = dict(self._diagnostics)
        extra = {
            "duration_s": duration,
            "output_rate_hz": (len(answered) - 1) / span if span > 0 else None,
            "duplicate_masks": scorer.duplicates,
            "late_masks": scorer.late,
            "unmatched_masks": scorer.unknown,
            "unreadable_masks": self._bad_masks,
            "segmentation_node": diagnostics,
        }
        return build_report(scorer.results, settings, extra)


def _spin(executor: SingleThreadedExecutor) -> None:
    try:
        executor.spin()
    except (ExternalShutdownException, KeyboardInterrupt):
        pass
    except Exception:  # the context went away under the executor at shutdown
        pass


def main(args: list[str] | None = None) -> int:
    """Console script ``evaluation_node``: runs one evaluation, writes the report, exits.

    Returns:
        0 after the report was written; 1 for a bad parameter or bag, no segmentation node
        within the time-outs, or an interrupted replay (one fatal log line each).
    """
    use_shipped_profile()  # before rclpy.init: the replayed frames are camera-sized
    rclpy.init(args=args)
    node = None
    executor = None
    thread = None
    status = 0
    logger = rclpy.logging.get_logger(NODE_NAME)
    try:
        node = EvaluationNode()
        logger = node.get_logger()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        thread = threading.Thread(target=_spin, args=(executor,), daemon=True)
        thread.start()
        report = node.run()
        from instrument_seg.evaluation.report import summary_line, write_report

        paths = write_report(report, node.settings.output_dir)
        logger.info(f"evaluation: {summary_line(report)}; report in {paths['markdown']}")
    except (InputError, ParameterException) as exc:
        logger.fatal(f"cannot evaluate: {exc}")
        status = 1
    except NoAnswer as exc:
        logger.fatal(str(exc))
        status = 1
    except (Interrupted, KeyboardInterrupt, ExternalShutdownException):
        logger.fatal("interrupted before the replay finished; no report written")
        status = 1
    finally:
        if node is not None:
            node.scorer.kick()
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if thread is not None:
            thread.join(timeout=5.0)
    return status


if __name__ == "__main__":
    sys.exit(main())
