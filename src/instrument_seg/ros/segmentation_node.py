"""segmentation_node: camera images in, instrument mask and confidence map out.

Topics (relative, remap them in launch):
- subscribes ``image`` (``sensor_msgs/Image``: rgb8, bgr8, rgba8, bgra8, mono8, mono16), or with
  ``transport: compressed`` ``<image>/compressed`` (``sensor_msgs/CompressedImage``, JPEG/PNG),
  named as image_transport names it (the remapped ``image`` plus ``/compressed``);
- publishes ``mask`` (mono8, 0/255) and ``confidence`` (32FC1, P(instrument)), both at the
  input's resolution with the input's header, and ``overlay`` (rgb8, the mask blended on the
  frame); each output is built only while something subscribes to it;
- publishes ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``) every ``diagnostics_period``
  (built by :mod:`instrument_seg.ros.segmentation_status`).

QoS: ``input_qos`` (default auto: adapted to the publishers, reliable while every one offers
reliable, else best effort; :class:`~instrument_seg.ros.qos.AdaptiveSubscription`) for the
subscription, ``output_qos`` (default reliable, REP-2003) for the outputs. An incompatible-QoS
event on a fixed-QoS topic is counted in diagnostics and logged once per topic with both sides'
policies. When publishers are matched but their frames do not get through
(:class:`~instrument_seg.ros.realtime.DeliveryMonitor`), the node says what happens and the
fixes in one warning (at most every 30 s) and in ``/diagnostics``.

A lifecycle (managed) node: configure reads the parameters and loads the model, activate creates
the publishers, the worker and the subscription, deactivate and cleanup free them, shutdown
frees everything and ends :func:`main`; a failed transition logs one sentence saying why; with
``autostart`` (default) :func:`main` configures and activates it at start-up.

The executor thread only hands each frame to a one-slot mailbox; a worker thread converts,
runs the :class:`~instrument_seg.inference.Segmenter` and publishes. A frame still waiting when
a newer one arrives is dropped and counted, so latency never grows with a backlog; frames that
never reached the node are counted as lost (the RMW's message-lost event, and per publisher the
gaps in its publication sequence numbers, or in the header stamps where the RMW gives none).
Malformed frames are rejected with a rate-limited warning (untrusted strings escaped and cut)
and counted; the node keeps running. A model that cannot be loaded is
one fatal log line and exit status 1.

All parameters are declared from :data:`instrument_seg.ros.params.SEGMENTATION` (with
descriptions and ranges) and listed with their defaults in ``config/seg.yaml``. They are
read-only; a value out of range or of the wrong type fails configure with one sentence, and
parameters the node does not have are named in one warning at start-up.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image

from instrument_seg.errors import InputError
from instrument_seg.imagemsg import compressed_to_rgb8, safe_text
from instrument_seg.imaging import overlay
from instrument_seg.ros.conversions import (
    ImageFormatError,
    array_to_image,
    image_to_rgb8,
    stamp_ns,
)
from instrument_seg.ros.dds_profile import shipped_profile, use_shipped_profile
from instrument_seg.ros.params import (
    SEGMENTATION,
    SegmentationSettings,
    declare,
    segmentation_settings,
    unknown_parameters,
    unknown_warning,
    values_of,
)
from instrument_seg.ros.qos import AdaptiveSubscription, describe, qos_profile, reliability_name
from instrument_seg.ros.realtime import (
    Counters,
    DeliveryMonitor,
    FrameInfo,
    Mailbox,
    RateLimiter,
)
from instrument_seg.ros.segmentation_status import (
    EVENTS,
    delivery_problem,
    diagnostic_status,
    incompatible_qos_warning,
)

NODE_NAME = "segmentation_node"
#: End-to-end latencies (header stamp to publish) outside [0, this) s are not on this host's
#: clock (a replayed bag, sim time) and are left out.
MAX_E2E_S = 60.0
#: Seconds between two looks at the input's publishers (input_qos auto) and its delivery.
WATCH_PERIOD = 0.5
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class SegmentationNode(LifecycleNode):
    """Wires topics, parameters and diagnostics around a Segmenter (see the module docstring).

    Lifecycle: configure (:meth:`on_configure`: parameters, model), activate (topics, worker),
    deactivate, cleanup; :meth:`start` does configure + activate and raises on failure,
    :meth:`stop` releases everything.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        # values refused here (type, range) are reported by configure, one sentence each
        self.parameter_problems = declare(self, SEGMENTATION)
        unknown = unknown_parameters(getattr(self, "_parameter_overrides", {}), SEGMENTATION)
        if unknown:
            self.get_logger().warning(unknown_warning(NODE_NAME, unknown, SEGMENTATION))
        self.autostart = bool(self.get_parameter("autostart").value)
        self.finished = False  # the shutdown transition ran: main() returns
        self.settings: SegmentationSettings | None = None
        self.segmenter: Any = None
        self.counters = Counters()
        self.fastdds_profile: str | None = None
        self.configure_error = ""
        self._mailbox: Mailbox | None = None
        self._worker: threading.Thread | None = None
        self._image_sub: AdaptiveSubscription | None = None
        self._timer = self._watch_timer = None
        self._delivery = DeliveryMonitor()
        self._frame = FrameInfo()
        self._problem_text = ""
        self._mask_pub = self._confidence_pub = self._overlay_pub = None
        self._diagnostics_pub = None
        self._topic = ""
        self._reported = dict.fromkeys(EVENTS, 0)
        self._incompatible_logged: set[str] = set()
        self._warnings = RateLimiter(5.0)
        self._stopping = False
        self._quiet = False  # start(): main logs the failure as the one fatal line

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Configure and activate (autostart).

        Raises:
            InputError: a bad parameter or a model that cannot be loaded (one sentence).
        """
        self._quiet = True
        try:
            if self.trigger_configure() != SUCCESS:
                raise InputError(self.configure_error or "configure failed")
            if self.trigger_activate() != SUCCESS:
                raise InputError(self.configure_error or "activate failed")
        finally:
            self._quiet = False

    def stop(self) -> None:
        """Stops the worker (finishing the frame in hand), destroys the topics, frees the model."""
        self._deactivate()
        self._cleanup()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Reads the parameters, loads and warms up the model."""
        try:
            self._configure()
        except Exception as exc:  # every failure says why, at start-up and through the services
            self.configure_error = _sentence(exc)
            self._cleanup()
            if not self._quiet:
                self.get_logger().error(f"cannot configure: {self.configure_error}")
            return FAILURE
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Creates the publishers, starts the worker, subscribes."""
        try:
            self._activate()
        except Exception as exc:  # e.g. a DDS refusal of a QoS: said, not swallowed
            self.configure_error = _sentence(exc)
            self._deactivate()
            if not self._quiet:
                self.get_logger().error(f"cannot activate: {self.configure_error}")
            return FAILURE
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribes, stops the worker, destroys the publishers."""
        self._deactivate()
        return SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Frees the model."""
        self._cleanup()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Releases everything; :func:`main` then returns (the process exits)."""
        self.stop()
        self.finished = True
        self.get_logger().info("shut down through the lifecycle: exiting")
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        return SUCCESS

    def _configure(self) -> None:
        if self.parameter_problems:
            raise InputError(next(iter(self.parameter_problems.values())))
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
        self._warnings = RateLimiter(s.warning_period)

    def _activate(self) -> None:
        s = self.settings
        out_qos = qos_profile(s.output_qos, s.queue_depth)
        self._mask_pub = self._publisher("mask", out_qos)
        self._confidence_pub = self._publisher("confidence", out_qos)
        if s.publish_overlay:
            self._overlay_pub = self._publisher("overlay", out_qos)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._stopping = False
        self._mailbox = Mailbox()
        self._worker = threading.Thread(target=self._work, name="segmentation", daemon=True)
        self._worker.start()
        if s.transport == "compressed":
            # image_transport's naming: the (remapped) base topic plus "/compressed"
            msg_type, topic = CompressedImage, self.resolve_topic_name("image") + "/compressed"
        else:
            msg_type, topic = Image, "image"
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda event: self._on_incompatible(self._topic, "subscription"),
            message_lost=lambda event: self.counters.add("lost_dds", event.total_count_change),
        )
        self._delivery = DeliveryMonitor()
        self._image_sub = AdaptiveSubscription(
            self, msg_type, topic, self._on_image, s.input_qos, s.queue_depth, events,
            what="image subscription",
        )
        self._topic = self._image_sub.topic_name
        self._timer = self.create_timer(s.diagnostics_period, self._publish_diagnostics)
        self._watch_timer = self.create_timer(WATCH_PERIOD, self._watch)
        size = _size(self.segmenter)
        self.get_logger().info(
            f"segmenting {self._topic} with {self.segmenter.backend} ({s.model_path}, input "
            f"{size}, transport {s.transport}); input_qos {s.input_qos} "
            f"({describe(self._image_sub.sub.qos_profile)} now), output_qos "
            f"{describe(out_qos)}; FastDDS profile {self.fastdds_profile or 'of the environment'}"
        )

    def _publisher(self, topic: str, profile: Any) -> Any:
        holder: dict[str, Any] = {}
        events = PublisherEventCallbacks(
            incompatible_qos=lambda event: self._on_incompatible(
                holder["pub"].topic_name, "publisher"
            )
        )
        holder["pub"] = self.create_publisher(Image, topic, profile, event_callbacks=events)
        return holder["pub"]

    def _deactivate(self) -> None:
        self._stopping = True
        if self._watch_timer is not None:
            self.destroy_timer(self._watch_timer)
            self._watch_timer = None
        if self._image_sub is not None:
            self._image_sub.destroy()
            self._image_sub = None
        if self._mailbox is not None:
            self._mailbox.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        for name in ("_mask_pub", "_confidence_pub", "_overlay_pub", "_diagnostics_pub"):
            pub = getattr(self, name)
            if pub is not None:
                self.destroy_publisher(pub)
                setattr(self, name, None)

    def _cleanup(self) -> None:
        if self.segmenter is not None:
            self.segmenter.close()
            self.segmenter = None

    # --- QoS events (executor thread) ------------------------------------------------------

    def _on_incompatible(self, topic: str, side: str) -> None:
        """Counts an incompatible-QoS event; logs it once per topic with both sides' QoS.

        With input_qos auto, an incompatible publisher on the input is a cue to adapt at once
        (it offers best effort to a reliable subscription): neither counted nor logged.
        """
        if side == "subscription" and self._image_sub is not None:
            if self._image_sub.mode == "auto":
                self._image_sub.poll()
                return
        self.counters.add("qos_incompatible")
        if topic in self._incompatible_logged:
            return
        self._incompatible_logged.add(topic)
        if side == "subscription":
            ours = self._image_sub.sub if self._image_sub is not None else None
            others = self.get_publishers_info_by_topic(topic)
        else:
            outputs = (self._mask_pub, self._confidence_pub, self._overlay_pub)
            ours = next((p for p in outputs if p is not None and p.topic_name == topic), None)
            others = self.get_subscriptions_info_by_topic(topic)
        mine = describe(ours.qos_profile) if ours is not None else "unknown"
        theirs = sorted({describe(i.qos_profile) for i in others})
        self.get_logger().warning(incompatible_qos_warning(topic, side, mine, theirs))

    # --- frames ----------------------------------------------------------------------------

    def _on_image(self, msg: Any, info: Any) -> None:
        """Executor thread: note receipt and stamp, hand over, count a replaced frame."""
        received = int(info.get("received_timestamp") or 0) or time.time_ns()
        self.counters.add("received")
        gid = info.get("publisher_gid")
        publisher = bytes(gid["data"]) if gid else msg.header.frame_id
        self.counters.gaps.add(
            stamp_ns(msg.header), publisher, info.get("publication_sequence_number")
        )
        if isinstance(msg, Image):
            self._frame = FrameInfo(msg.width, msg.height, msg.encoding, len(msg.data))
        else:
            self._frame = FrameInfo(nbytes=len(msg.data))
        if self._mailbox.put((msg, received)):
            self.counters.add("dropped")

    def _work(self) -> None:
        mailbox = self._mailbox
        while True:
            item = mailbox.get()
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
                        f"segmentation failed on a frame from {self._topic}: "
                        f"{type(exc).__name__}: {safe_text(str(exc), 200)}"
                    )

    def _reject(self, kind: str, problem: str) -> None:
        count = self.counters.reject(kind)
        if self._warnings.allow(kind):
            self.get_logger().warning(
                f"rejected a frame on {self._topic}: {problem} "
                f"({count} '{kind}' rejection(s) so far)"
            )

    def _process(self, msg: Any, received_ns: int) -> None:
        s = self.settings
        try:
            if s.transport == "compressed":
                rgb = compressed_to_rgb8(msg, s.max_pixels)
            else:
                rgb = image_to_rgb8(msg, s.max_pixels)
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
        # The mask first: consumers that only need it do not wait for the 4x larger map. An
        # output nobody subscribes to is not built (a 1280x1024 confidence map is 5.2 MB).
        skipped = 0
        for pub, array, encoding in (
            (self._mask_pub, mask, "mono8"),
            (self._confidence_pub, prob, "32FC1"),
        ):
            if pub.get_subscription_count() > 0:
                pub.publish(array_to_image(array, encoding, msg.header))
            else:
                skipped += 1
        now = time.time_ns()
        e2e = (now - stamp_ns(msg.header)) / 1e9
        self.counters.processed_with_latency(
            (now - received_ns) / 1e9, e2e if 0.0 <= e2e < MAX_E2E_S else None
        )
        if skipped:
            self.counters.add("outputs_skipped", skipped)
        if self._overlay_pub is not None and self._overlay_pub.get_subscription_count() > 0:
            drawn = overlay(np.ascontiguousarray(rgb), mask > 0)
            self._overlay_pub.publish(array_to_image(drawn, "rgb8", msg.header))
            self.counters.add("overlays")

    # --- publishers and delivery (executor thread, every WATCH_PERIOD) ---------------------

    def _watch(self) -> None:
        """input_qos auto: re-decides the subscription's reliability; then checks that frames
        the publishers send arrive, and explains once (per 30 s) when they do not."""
        sub = self._image_sub
        if sub is None:
            return
        sub.poll()
        c = self.counters.losses()
        now = time.monotonic()
        problem = self._delivery.update(
            now,
            sub.get_publisher_count(),
            c["received"],
            c["lost_estimated"],
            c["lost_dds"],
            math.nan if c["sequenced"] else c["stamp_rate_hz"],  # exact counts need no rate
        )
        if problem is None:
            self._problem_text = ""
            return
        self._problem_text = delivery_problem(
            self._topic,
            problem,
            sub.get_publisher_count(),
            self._frame,
            [reliability_name(i.qos_profile) for i in sub.publishers()],
            describe(sub.sub.qos_profile),
            self.settings.transport,
            self.fastdds_profile or str(shipped_profile() or ""),
        )
        if self._delivery.should_warn(now):
            self.counters.add("delivery_warnings")
            self.get_logger().warning(self._problem_text + " (docs/ros.md, FastDDS profile)")

    # --- diagnostics -----------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        """Publishes the status (:func:`~instrument_seg.ros.segmentation_status.
        diagnostic_status`) with the events counted since the previous one."""
        c = self.counters.snapshot()
        new = {k: c[k] - self._reported[k] for k in self._reported}
        self._reported = {k: c[k] for k in self._reported}
        sub, seg = self._image_sub, self.segmenter
        status = diagnostic_status(
            self.get_fully_qualified_name(),
            c,
            new,
            self.settings,
            topic=self._topic,
            delivery_problem=self._problem_text,
            publishers=sub.get_publisher_count() if sub else 0,
            backend=seg.backend if seg is not None else "",
            input_size=_size(seg) if seg is not None else "",
            input_qos=sub.describe() if sub else self.settings.input_qos,
            fastdds_profile=self.fastdds_profile or "",
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)


def _size(segmenter: Any) -> str:
    return "x".join(str(int(v)) for v in segmenter.input_size)


def _sentence(exc: Exception) -> str:
    """An exception as the one sentence a failed transition logs: an InputError as it is,
    anything else with its type (a DDS or rclpy refusal)."""
    if isinstance(exc, InputError):
        return str(exc)
    return f"{type(exc).__name__}: {safe_text(str(exc), 300)}"


def main(args: list[str] | None = None) -> int:
    """Console script ``segmentation_node``: runs until SIGINT/SIGTERM or the lifecycle's
    shutdown transition.

    Uses the shipped FastDDS profile (:mod:`instrument_seg.ros.dds_profile`) unless the
    environment names one; with ``autostart`` configures and activates the node.

    Returns:
        0 after a normal shutdown, 1 when the node could not start (bad parameter or model),
        after one fatal log line naming the problem.
    """
    profile = use_shipped_profile()  # before rclpy.init: FastDDS reads it for the participant
    rclpy.init(args=args)
    node = None
    status = 0
    try:
        node = SegmentationNode()
        node.fastdds_profile = profile
        if node.autostart:
            node.start()
        else:
            node.get_logger().info("autostart false: waiting for change_state (configure)")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not node.finished:
            executor.spin_once(timeout_sec=0.2)
        linger = time.monotonic() + 0.5  # the shutdown transition's reply goes out
        while rclpy.ok() and time.monotonic() < linger:
            executor.spin_once(timeout_sec=0.05)
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
