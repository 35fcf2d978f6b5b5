"""segmentation_node: camera images in, instrument mask and confidence map out.

Topics (relative, remap them in launch):
- subscribes ``image`` (``sensor_msgs/Image``: rgb8, bgr8, rgba8, bgra8, mono8, mono16);
- publishes ``mask`` (mono8, 0/255) and ``confidence`` (32FC1, P(instrument)), both at the
  input's resolution with the input's header, and ``overlay`` (rgb8, the mask blended on the
  frame) only while something subscribes to it;
- publishes ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``) every ``diagnostics_period``.

The executor thread only hands each frame to a one-slot mailbox; a worker thread converts,
runs the :class:`~instrument_seg.inference.Segmenter` and publishes. A frame still waiting when
a newer one arrives is dropped and counted, so latency never grows with a backlog. Malformed
frames are rejected with a rate-limited warning and counted; the node keeps running. A model
that cannot be loaded is one fatal log line and exit status 1.

All parameters are declared from :data:`instrument_seg.ros.params.SEGMENTATION` (with
descriptions) and listed with their defaults in ``config/seg.yaml``. They are read-only: restart
the node to change them.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image

from instrument_seg.errors import InputError
from instrument_seg.ros.conversions import (
    INPUT_ENCODINGS,
    ImageFormatError,
    array_to_image,
    image_to_rgb8,
)
from instrument_seg.ros.params import (
    SEGMENTATION,
    SegmentationSettings,
    declare,
    segmentation_settings,
    values_of,
)
from instrument_seg.ros.qos import qos_profile
from instrument_seg.ros.realtime import Counters, Mailbox, RateLimiter

NODE_NAME = "segmentation_node"


class SegmentationNode(Node):
    """Wires topics, parameters and diagnostics around a Segmenter (see the module docstring).

    Construct, then :meth:`start` (reads parameters, loads the model, starts the worker), spin,
    then :meth:`stop` (stops the worker, frees the model).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare(self, SEGMENTATION)
        self.settings: SegmentationSettings | None = None
        self.segmenter: Any = None
        self.counters = Counters()
        self._mailbox = Mailbox()
        self._worker: threading.Thread | None = None
        self._overlay_pub = None
        self._overlay_fn = None
        self._rejected_before = 0
        self._failed_before = 0
        self._stopping = False

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Reads parameters, loads and warms up the model, creates topics, starts the worker.

        Raises:
            InputError: a bad parameter or a model that cannot be loaded (one sentence).
        """
        self.settings = s = segmentation_settings(values_of(self, SEGMENTATION))
        from instrument_seg.inference import Segmenter  # the model stack loads with the node

        self.segmenter = Segmenter.from_path(
            s.model_path, backend=s.backend, threshold=s.threshold, threads=s.threads
        )
        if s.input_size is not None and tuple(self.segmenter.input_size) != s.input_size:
            if self.segmenter.backend != "torch":
                raise InputError(
                    f"model {self.segmenter.model_path} runs at {_size(self.segmenter)} with "
                    f"{self.segmenter.backend} but parameter input_size is "
                    f"{s.input_size[0]}x{s.input_size[1]}; re-export it at that size or set "
                    "input_size to [0, 0]"
                )
            self.segmenter.close()
            self.segmenter = Segmenter.from_path(
                s.model_path,
                backend=s.backend,
                threshold=s.threshold,
                input_size=s.input_size,
                threads=s.threads,
            )
        model_size = tuple(int(v) for v in self.segmenter.input_size)
        # One inference before the first frame: backends allocate and tune lazily.
        try:
            self.segmenter.predict(np.zeros((*model_size, 3), np.uint8))
        except InputError as exc:
            raise InputError(
                f"model {self.segmenter.model_path} fails on a blank "
                f"{model_size[0]}x{model_size[1]} frame ({exc})"
            ) from exc
        if s.publish_overlay:
            from instrument_seg.evaluation.figures import overlay

            self._overlay_fn = overlay

        qos = qos_profile(s.qos, s.queue_depth)
        self._mask_pub = self.create_publisher(Image, "mask", qos)
        self._confidence_pub = self.create_publisher(Image, "confidence", qos)
        if s.publish_overlay:
            self._overlay_pub = self.create_publisher(Image, "overlay", qos)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._warnings = RateLimiter(s.warning_period)
        self._worker = threading.Thread(target=self._work, name="segmentation", daemon=True)
        self._worker.start()
        self._image_sub = self.create_subscription(Image, "image", self._on_image, qos)
        self.create_timer(s.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"segmenting {self._image_sub.topic_name} with {self.segmenter.backend} "
            f"({s.model_path}, input {model_size[0]}x{model_size[1]}), qos {s.qos} depth "
            f"{s.queue_depth}"
        )

    def stop(self) -> None:
        """Stops the worker (finishing the frame in hand) and frees the model."""
        self._stopping = True
        self._mailbox.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        if self.segmenter is not None:
            self.segmenter.close()
            self.segmenter = None

    # --- frames ----------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        """Executor thread: stamp receipt, hand over, count a replaced frame as dropped."""
        received_at = time.monotonic()
        self.counters.add("received")
        if self._mailbox.put((msg, received_at)):
            self.counters.add("dropped")

    def _work(self) -> None:
        while True:
            item = self._mailbox.get()
            if item is None:
                return
            try:
                self._process(*item)
            except Exception as exc:  # a backend failure on one frame must not stop the node
                self.counters.add("failed")
                if self._stopping:  # publishing into a context that is shutting down
                    return
                if self._warnings.allow("failed"):
                    self.get_logger().error(
                        f"segmentation failed on a frame from {self._image_sub.topic_name}: "
                        f"{type(exc).__name__}: {exc}"
                    )

    def _reject(self, kind: str, problem: str) -> None:
        count = self.counters.reject(kind)
        if self._warnings.allow(kind):
            self.get_logger().warning(
                f"rejected a frame on {self._image_sub.topic_name}: {problem} "
                f"({count} '{kind}' rejection(s) so far)"
            )

    def _process(self, msg: Image, received_at: float) -> None:
        try:
            rgb = image_to_rgb8(msg, self.settings.max_pixels)
        except ImageFormatError as exc:
            self._reject(exc.kind, str(exc))
            return
        try:
            mask, prob = self.segmenter.predict(rgb)
        except InputError as exc:
            self._reject("inference", f"inference rejected it: {exc}")
            return
        h, w = rgb.shape[:2]
        if np.shape(prob) != (h, w) or np.shape(mask) != (h, w):
            self._reject(
                "output",
                f"outputs of shape {np.shape(mask)} / {np.shape(prob)} for a {h}x{w} frame",
            )
            return
        if not np.isfinite(prob).all():
            self._reject("nonfinite", "the model's confidence map contains NaN or infinity")
            return
        if np.asarray(mask).dtype != np.uint8 or np.asarray(prob).dtype != np.float32:
            self._reject(
                "output", f"outputs of dtype {np.asarray(mask).dtype} / {np.asarray(prob).dtype}"
            )
            return
        # The mask first: consumers that only need it do not wait for the 4x larger map.
        self._mask_pub.publish(array_to_image(mask, "mono8", msg.header))
        self._confidence_pub.publish(array_to_image(prob, "32FC1", msg.header))
        self.counters.processed_with_latency(time.monotonic() - received_at)
        if self._overlay_pub is not None and self._overlay_pub.get_subscription_count() > 0:
            drawn = self._overlay_fn(np.ascontiguousarray(rgb), mask > 0)
            self._overlay_pub.publish(array_to_image(drawn, "rgb8", msg.header))
            self.counters.add("overlays")

    # --- diagnostics -----------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        c = self.counters.snapshot()
        s = self.settings
        topic = self._image_sub.topic_name
        new_rejected = c["rejected"] - self._rejected_before
        new_failed = c["failed"] - self._failed_before
        self._rejected_before, self._failed_before = c["rejected"], c["failed"]
        if new_rejected or new_failed:
            level = DiagnosticStatus.WARN
            message = f"{new_rejected} rejected, {new_failed} failed frame(s) since last report"
        elif c["received"] == 0:
            level, message = DiagnosticStatus.OK, f"waiting for images on {topic}"
        else:
            level = DiagnosticStatus.OK
            message = f"{c['input_rate_hz']:.1f} Hz in, p50 latency {c['latency_p50_ms']:.1f} ms"
        values = {
            "input_rate_hz": f"{c['input_rate_hz']:.2f}",
            "latency_p50_ms": _fmt(c["latency_p50_ms"]),
            "latency_p95_ms": _fmt(c["latency_p95_ms"]),
            "received": c["received"],
            "processed": c["processed"],
            "dropped": c["dropped"],
            "rejected": c["rejected"],
            **{f"rejected_{k}": v for k, v in sorted(c["rejected_by_kind"].items())},
            "failed": c["failed"],
            "overlays": c["overlays"],
            "backend": self.segmenter.backend if self.segmenter is not None else "",
            "model_path": s.model_path,
            "input_size": _size(self.segmenter) if self.segmenter is not None else "",
            "image_topic": topic,
            "encodings": ",".join(INPUT_ENCODINGS),
            "qos": f"{s.qos}/{s.queue_depth}",
        }
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_fully_qualified_name()}: segmentation",
            message=message,
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)


def _size(segmenter: Any) -> str:
    return "x".join(str(int(v)) for v in segmenter.input_size)


def _fmt(ms: float) -> str:
    return "nan" if math.isnan(ms) else f"{ms:.2f}"


def main(args: list[str] | None = None) -> int:
    """Console script ``segmentation_node``: runs until SIGINT/SIGTERM.

    Returns:
        0 after a normal shutdown, 1 when the node could not start (bad parameter or model),
        after one fatal log line naming the problem.
    """
    rclpy.init(args=args)
    node = None
    status = 0
    try:
        node = SegmentationNode()
        node.start()
        rclpy.spin(node)
    except (InputError, ParameterException) as exc:  # bad parameter (value or type), bad model
        logger = node.get_logger() if node is not None else rclpy.logging.get_logger(NODE_NAME)
        logger.fatal(f"cannot start: {exc}")
        status = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
