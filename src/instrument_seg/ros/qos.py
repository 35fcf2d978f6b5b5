"""The QoS profiles of the nodes' image topics, one place for both nodes (and their tests).

REP-2003: subscriptions to sensor data use ``sensor_data`` (best effort, so they match every
publisher), publishers the system default ``reliable`` (every subscriber matches). Both nodes
take ``input_qos`` (their subscriptions) and ``output_qos`` (their image publishers), each one of
:data:`instrument_seg.ros.params.QOS_CHOICES`; both are keep-last ``depth``, volatile: a late
joiner gets no stale frames.
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


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
