"""The QoS profiles of the nodes' image topics, one place for both nodes (and their tests).

REP-2003: subscriptions to sensor data use ``sensor_data`` (best effort, so they match every
publisher), publishers the system default ``reliable`` (every subscriber matches). Both nodes
take ``input_qos`` (their subscriptions: :data:`instrument_seg.ros.params.INPUT_QOS_CHOICES`,
default ``auto``, see :class:`AdaptiveSubscription`) and ``output_qos`` (their image publishers,
:data:`instrument_seg.ros.params.QOS_CHOICES`); all are keep-last ``depth``, volatile: a late
joiner gets no stale frames.
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from instrument_seg.ros.realtime import adapted_reliability


def qos_profile(name: str, depth: int) -> QoSProfile:
    """``reliable`` or ``sensor_data`` (best effort), keep-last ``depth``, volatile."""
    reliability = (
        ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT
    )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


def describe(profile: Any) -> str:
    """A QoS profile in words for logs: ``best_effort/volatile/keep_last 5``."""

    def word(policy: Any) -> str:
        return getattr(policy, "name", str(policy)).lower()

    history = word(profile.history)
    if history == "keep_last":
        history += f" {profile.depth}"
    parts = (word(profile.reliability), word(profile.durability), history)
    return "/".join(p for p in parts if p != "unknown")


def reliability_name(profile: Any) -> str:
    """``reliable`` / ``best_effort`` (lower case) of a QoS profile."""
    policy = profile.reliability
    return getattr(policy, "name", str(policy)).lower()


class AdaptiveSubscription:
    """A subscription whose QoS follows ``input_qos``: fixed (``reliable``, ``sensor_data``) or
    ``auto``, adapted to the publishers as rosbag2 adapts its recorder
    (:func:`instrument_seg.ros.realtime.adapted_reliability`): reliable while every publisher
    offers reliable, best effort as soon as one offers best effort or before any is there (once
    decided, the decision stays while the publishers are gone: no churn while a camera restarts).

    Args:
        node: the rclpy node that owns the subscription.
        msg_type: the message type.
        topic: the topic name (relative names resolve in the node's namespace).
        callback: the subscription callback.
        mode: ``auto``, ``reliable`` or ``sensor_data``.
        depth: the keep-last history depth.
        event_callbacks: ``SubscriptionEventCallbacks`` for every subscription created.
        what: how the change log line names the subscription.

    :meth:`poll` (from a timer, and when an incompatible-QoS event says a publisher cannot
    match) re-decides and, when the decision changes, destroys the subscription and creates it
    again with the new reliability, logging the change once with the publishers' QoS. Keep-last
    ``depth`` and volatile either way.
    """

    def __init__(
        self,
        node: Any,
        msg_type: Any,
        topic: str,
        callback: Any,
        mode: str,
        depth: int,
        event_callbacks: Any = None,
        what: str = "subscription",
    ) -> None:
        self.node = node
        self.msg_type = msg_type
        self.callback = callback
        self.mode = mode
        self.depth = depth
        self.event_callbacks = event_callbacks
        self.what = what
        self.topic_name = node.resolve_topic_name(topic)
        self.reliability = "" if mode == "auto" else reliability_name(qos_profile(mode, depth))
        self.sub: Any = None
        self.changes = 0
        if mode == "auto":
            self.poll()
        else:
            self._create()

    def _create(self) -> None:
        name = "reliable" if self.reliability == "reliable" else "sensor_data"
        self.sub = self.node.create_subscription(
            self.msg_type,
            self.topic_name,
            self.callback,
            qos_profile(name, self.depth),
            event_callbacks=self.event_callbacks,
        )

    def publishers(self) -> list[Any]:
        """The publishers on the topic (``TopicEndpointInfo``: node, QoS)."""
        return list(self.node.get_publishers_info_by_topic(self.topic_name))

    def decision(self) -> tuple[str, list[Any]]:
        """The reliability ``auto`` takes now, and the publishers it is decided from. With no
        publisher an existing subscription keeps its reliability (no churn while a camera
        restarts)."""
        infos = self.publishers()
        if not infos and self.sub is not None:
            return self.reliability, infos
        return adapted_reliability(reliability_name(i.qos_profile) for i in infos), infos

    def settled(self) -> bool:
        """True when the subscription has the QoS the publishers call for now."""
        if self.mode != "auto":
            return True
        return self.sub is not None and self.decision()[0] == self.reliability

    def poll(self) -> bool:
        """Re-decides (``auto`` only); returns True when the subscription was re-created."""
        if self.mode != "auto":
            return False
        choice, infos = self.decision()
        if self.sub is not None and choice == self.reliability:
            return False
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
            self.sub = None
        self.reliability = choice
        self._create()
        self.changes += 1
        if infos:
            offered = ", ".join(
                sorted(f"{i.node_namespace.rstrip('/')}/{i.node_name} {describe(i.qos_profile)}"
                       for i in infos)
            )
            why = (
                "every publisher offers reliable" if choice == "reliable"
                else "a publisher offers best effort"
            )
            text = f"{why} ({offered})"
        else:
            text = "no publisher yet; best effort matches the first one, whatever it offers"
        now = describe(self.sub.qos_profile)
        self.node.get_logger().info(
            f"input_qos auto: {self.what} {self.topic_name} is now {now}: {text}"
        )
        return True

    def describe(self) -> str:
        """``auto (best_effort)/5``, ``sensor_data/5``: the mode and what it is now."""
        if self.mode == "auto":
            return f"auto ({self.reliability})/{self.depth}"
        return f"{self.mode}/{self.depth}"

    def get_publisher_count(self) -> int:
        """Publishers matched with the subscription now."""
        return self.sub.get_publisher_count() if self.sub is not None else 0

    def destroy(self) -> None:
        """Destroys the subscription."""
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
            self.sub = None
