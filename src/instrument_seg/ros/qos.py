"""The QoS profiles of the nodes' image topics, one place for both nodes (and their tests).

The ``qos`` parameter of both nodes names one (:data:`instrument_seg.ros.params.QOS_CHOICES`):
``reliable`` (the default: FastDDS delivers every camera-sized frame, docs/ros.md) or
``sensor_data`` (best effort, as REP-2003 camera drivers publish). Both are keep-last
``depth``, volatile: a late joiner gets no stale frames.
"""

from __future__ import annotations

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
