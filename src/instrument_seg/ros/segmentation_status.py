"""segmentation_node's reports: its ``/diagnostics`` status, its delivery and QoS warnings.

Pure functions of what the node counted (:meth:`instrument_seg.ros.realtime.Counters.snapshot`),
its settings and what it sees of its topics; :mod:`instrument_seg.ros.segmentation_node` gathers
these, publishes the status every ``diagnostics_period`` and logs the warnings.
"""

from __future__ import annotations

import math
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from instrument_seg.imagemsg import safe_text
from instrument_seg.ros.conversions import INPUT_ENCODINGS
from instrument_seg.ros.params import SegmentationSettings
from instrument_seg.ros.realtime import FrameInfo, starvation_fixes, starvation_message

#: Frame events reported as new since the previous status: any of them makes it a warning.
EVENTS = ("rejected", "failed", "lost", "qos_incompatible")


def diagnostic_status(
    name: str,
    c: dict[str, Any],
    new: dict[str, int],
    settings: SegmentationSettings,
    *,
    topic: str,
    delivery_problem: str,
    publishers: int,
    backend: str,
    input_size: str,
    input_qos: str,
    fastdds_profile: str,
) -> DiagnosticStatus:
    """The node's status: level, one-line message and every count as a key-value pair.

    Args:
        name: the node's fully qualified name.
        c: the counters' snapshot.
        new: for each of :data:`EVENTS`, how many happened since the previous status.
        settings: the node's settings.
        topic: the image topic (resolved).
        delivery_problem: what the delivery monitor explains (frames sent but not arriving);
            empty when delivery is fine.
        publishers: publishers matched on the image topic.
        backend: the segmenter's backend ("" before the model is loaded).
        input_size: the model's input size, ``HxW`` ("" before the model is loaded).
        input_qos: the subscription's QoS in words (its setting before it exists).
        fastdds_profile: the FastDDS profile in use ("" for the environment's).
    """
    s = settings
    problems = [f"{new[k]} {k.replace('_', ' ')}" for k in new if new[k]]
    if delivery_problem:
        level, message = DiagnosticStatus.WARN, delivery_problem
    elif problems:
        level = DiagnosticStatus.WARN
        message = f"{', '.join(problems)} frame event(s) since last report"
        if new["qos_incompatible"]:
            message += f" (incompatible QoS: see the node's log for {topic} and its outputs)"
    elif c["received"] == 0 and c["qos_incompatible"]:
        level = DiagnosticStatus.WARN
        message = f"no images: incompatible QoS on {topic} or an output (see the log)"
    elif c["received"] == 0:
        level, message = DiagnosticStatus.OK, f"waiting for images on {topic}"
        if publishers:
            message += (
                f" ({publishers} publisher(s) matched, no frame arrived: idle, or frames too "
                "large for the transport; see docs/ros.md, FastDDS profile)"
            )
    else:
        level = DiagnosticStatus.OK
        message = (
            f"{c['input_rate_hz']:.1f} Hz in, p50 latency {c['latency_p50_ms']:.1f} ms "
            f"(end to end {c['e2e_latency_p50_ms']:.1f} ms)"
        )
    values = {
        "input_rate_hz": f"{c['input_rate_hz']:.2f}",
        "stamp_rate_hz": _fmt(c["stamp_rate_hz"]),
        "latency_p50_ms": _fmt(c["latency_p50_ms"]),
        "latency_p95_ms": _fmt(c["latency_p95_ms"]),
        "e2e_latency_p50_ms": _fmt(c["e2e_latency_p50_ms"]),
        "e2e_latency_p95_ms": _fmt(c["e2e_latency_p95_ms"]),
        "received": c["received"],
        "processed": c["processed"],
        "dropped": c["dropped"],
        "rejected": c["rejected"],
        **{f"rejected_{k}": v for k, v in sorted(c["rejected_by_kind"].items())},
        "failed": c["failed"],
        "lost": c["lost"],
        "lost_dds": c["lost_dds"],
        "lost_estimated": c["lost_estimated"],
        "qos_incompatible": c["qos_incompatible"],
        "publishers": publishers,
        "delivery": delivery_problem or "ok",
        "delivery_warnings": c["delivery_warnings"],
        "overlays": c["overlays"],
        "outputs_skipped": c["outputs_skipped"],
        "backend": backend,
        "model_path": s.model_path,
        "input_size": input_size,
        "image_topic": topic,
        "transport": s.transport,
        "encodings": ",".join(INPUT_ENCODINGS) if s.transport == "raw" else "jpeg,png",
        "input_qos": input_qos,
        "output_qos": f"{s.output_qos}/{s.queue_depth}",
        "fastdds_profile": fastdds_profile,
    }
    return DiagnosticStatus(
        level=level,
        name=f"{name}: segmentation",
        message=message,
        hardware_id=name,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )


def delivery_problem(
    topic: str,
    problem: dict[str, Any],
    publishers: int,
    frame: FrameInfo,
    offered: list[str],
    subscription_qos: str,
    transport: str,
    profile: str,
) -> str:
    """What happens when frames are published but do not arrive, and the fixes: the text of
    the delivery warning and of the status's message.

    Args:
        topic: the image topic (resolved).
        problem: what :meth:`~instrument_seg.ros.realtime.DeliveryMonitor.update` found
            (``received``, ``sent``, ``seconds``).
        publishers: publishers matched on the topic.
        frame: the last frame seen; its encoding came from a message and is escaped and cut.
        offered: each publisher's reliability in words.
        subscription_qos: the subscription's QoS in words.
        transport: ``raw`` or ``compressed``.
        profile: the FastDDS profile's path ("" when none is known).
    """
    frame = FrameInfo(frame.width, frame.height, safe_text(frame.encoding, 16), frame.nbytes)
    what = starvation_message(
        topic,
        problem["received"],
        problem["sent"],
        problem["seconds"],
        publishers,
        frame,
        offered,
        subscription_qos,
    )
    fixes = starvation_fixes(transport, profile or None)
    return f"{what}. Fixes: " + "; ".join(fixes)


def incompatible_qos_warning(topic: str, side: str, mine: str, theirs: list[str]) -> str:
    """The one warning about an incompatible-QoS event on ``topic``, with the fix.

    Args:
        topic: the topic of the event.
        side: ``subscription`` (the image input) or ``publisher`` (an output).
        mine: this node's QoS on the topic in words (``unknown`` if gone).
        theirs: the other side's QoS profiles in words, sorted.
    """
    if side == "subscription":
        other = "publisher(s)"
        hint = "set input_qos auto or sensor_data: best effort matches every publisher"
    else:
        other = "subscriber(s)"
        hint = "set output_qos reliable: every subscriber matches a reliable publisher"
    return (
        f"incompatible QoS on {topic}: this node's {side} is {mine}, the other {other} "
        f"{', '.join(theirs) or 'unknown'}; no message flows between them ({hint})"
    )


def _fmt(ms: float) -> str:
    return "nan" if math.isnan(ms) else f"{ms:.2f}"
