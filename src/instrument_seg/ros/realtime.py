"""Real-time plumbing for nodes: a latest-frame-wins mailbox, running counters, the frames lost
per publisher (:class:`StampGaps`), the ``input_qos: auto`` decision
(:func:`adapted_reliability`), and when and how to explain frames that do not get through
(:class:`DeliveryMonitor`, :func:`starvation_message`, :func:`starvation_fixes`).

Plain Python (no rclpy), so it is unit-tested without DDS; the nodes only wire it. The node's
subscription callback puts each frame into a one-slot :class:`Mailbox` on the executor thread;
a worker thread takes the newest one. A frame that was still waiting when a newer one arrived
is replaced (and counted as dropped), so the node never builds a backlog whatever the camera
rate.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


class Mailbox:
    """A one-slot, latest-wins hand-over between one producer and one consumer thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._closed = False

    def put(self, item: Any) -> bool:
        """Stores ``item``; returns True when it replaced one nobody had taken (a drop)."""
        with self._cond:
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> Any:
        """Takes the newest item, waiting up to ``timeout`` s (None: until one comes).

        Returns:
            The item, or None on timeout or once :meth:`close` was called.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if self._closed:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Wakes the consumer; every later :meth:`get` returns None."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()


class Counters:
    """Thread-safe frame counters and a latency window for diagnostics.

    Every received frame ends exactly once as processed, dropped (replaced in the mailbox),
    rejected (bad input or output, by kind) or failed (the backend raised), or is still in
    flight; frames that never reached the node are counted as ``lost_dds`` (the RMW's
    message-lost event) and estimated from gaps in the header stamps (:class:`StampGaps`).
    :meth:`snapshot` reports all of them.
    """

    def __init__(self, latency_window: int = 300) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.failed = 0
        self.overlays = 0
        self.lost_dds = 0
        self.qos_incompatible = 0
        self.outputs_skipped = 0
        self.delivery_warnings = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        self._latencies: collections.deque[float] = collections.deque(maxlen=latency_window)
        self._e2e: collections.deque[float] = collections.deque(maxlen=latency_window)
        self._rate_mark = (time.monotonic(), 0)
        self.gaps = StampGaps()

    def add(self, name: str, n: int = 1) -> int:
        """Adds ``n`` to the counter ``name`` (received, processed, dropped, failed, overlays,
        lost_dds, qos_incompatible, outputs_skipped, delivery_warnings);
        returns the new value."""
        with self._lock:
            value = getattr(self, name) + n
            setattr(self, name, value)
            return value

    def reject(self, kind: str) -> int:
        """Counts one rejected frame of ``kind``; returns how many of that kind so far."""
        with self._lock:
            self.rejected[kind] += 1
            return self.rejected[kind]

    def processed_with_latency(self, seconds: float, end_to_end: float | None = None) -> None:
        """Counts one processed frame whose receipt-to-publish latency was ``seconds`` and
        header-stamp-to-publish latency ``end_to_end`` (None: the stamp is not on this host's
        clock, e.g. a replayed bag)."""
        with self._lock:
            self.processed += 1
            self._latencies.append(seconds)
            if end_to_end is not None:
                self._e2e.append(end_to_end)

    def losses(self) -> dict[str, Any]:
        """``received``, ``lost_dds``, ``lost_estimated`` (sequence numbers or stamps, per
        publisher), ``stamp_rate_hz`` and ``sequenced`` (:meth:`StampGaps.update`) now, without
        touching the input-rate mark."""
        with self._lock:
            received, lost_dds = self.received, self.lost_dds
        gaps = self.gaps.update()
        return {
            "received": received,
            "lost_dds": lost_dds,
            "lost_estimated": gaps["lost"],
            "stamp_rate_hz": gaps["rate_hz"],
            "sequenced": gaps["sequenced"],
        }

    def snapshot(self) -> dict[str, Any]:
        """Counts, the input rate since the previous snapshot, latency p50/p95 over the window.

        Latencies are in ms (NaN before the first processed frame); ``input_rate_hz`` is the
        received frames per second since the previous call.
        """
        now = time.monotonic()
        with self._lock:
            mark_time, mark_received = self._rate_mark
            self._rate_mark = (now, self.received)
            latencies = list(self._latencies)
            e2e = list(self._e2e)
            out = {
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped,
                "rejected": sum(self.rejected.values()),
                "rejected_by_kind": dict(self.rejected),
                "failed": self.failed,
                "overlays": self.overlays,
                "lost_dds": self.lost_dds,
                "qos_incompatible": self.qos_incompatible,
                "outputs_skipped": self.outputs_skipped,
                "delivery_warnings": self.delivery_warnings,
            }
        gaps = self.gaps.update()
        out["lost_estimated"] = gaps["lost"]
        out["lost"] = max(out["lost_dds"], gaps["lost"])
        out["stamp_rate_hz"] = gaps["rate_hz"]
        out["publishers_heard"] = gaps["publishers"]
        elapsed = now - mark_time
        out["input_rate_hz"] = (out["received"] - mark_received) / elapsed if elapsed else 0.0
        out["latency_p50_ms"], out["latency_p95_ms"] = percentiles_ms(latencies, (50, 95))
        out["e2e_latency_p50_ms"], out["e2e_latency_p95_ms"] = percentiles_ms(e2e, (50, 95))
        return out


#: The rate from sequence numbers is taken over the last this many ns of stamps.
RATE_WINDOW_NS = 3_000_000_000


class _Track:
    """What :class:`StampGaps` knows of one publisher."""

    def __init__(self, window: int) -> None:
        self.last_stamp: int | None = None
        self.last_seq: int | None = None
        self.intervals: collections.deque[int] = collections.deque(maxlen=window)
        self.period_ns: float | None = None
        self.pending: list[int] = []  # off-period intervals awaiting a verdict
        self.lost_seq = 0
        self.lost_stamps = 0
        self.samples: collections.deque[tuple[int, int]] = collections.deque(maxlen=window)
        self.seen_at = 0.0

    def rate_hz(self) -> float:
        """Frames per second this publisher sends: from its sequence numbers over its stamps
        where the RMW gives them (losses do not bias it), else 1 / the stamp period."""
        if len(self.samples) >= 2:
            (s0, q0), (s1, q1) = self.samples[0], self.samples[-1]
            if s1 > s0 and q1 > q0:
                return (q1 - q0) * 1e9 / (s1 - s0)
        return 1e9 / self.period_ns if self.period_ns else math.nan


class StampGaps:
    """Frames lost before the node saw them, per publisher, and the rate the publishers send.

    The executor thread only records each received frame (:meth:`add`: its header stamp, the
    publisher's id and the publication sequence number, cheap); :meth:`update` (from a timer)
    folds them in, per publisher:

    - where the RMW gives publication sequence numbers (FastDDS does), a jump from ``n`` to
      ``n + k`` is ``k - 1`` frames published but never taken by the node: exact, whatever the
      rate or its changes; the rate is sequence numbers per second of stamps.
    - otherwise, from the header stamps: the period is the median of the recent intervals, and
      an interval counts as a gap only when it is an integer multiple ``k >= 2`` of the period
      (within ``tolerance`` periods) and the next interval is back at the period; intervals
      that stay off the period (``confirm`` in a row, alike) are a rate change, which restarts
      the estimate instead of counting anything. A stamp that goes back, repeats, or jumps by
      more than ``max_gap`` periods (a restarted camera, a looped bag) also starts afresh.

    Publishers are told apart by their id (the RMW's publisher gid, or the header's frame_id
    where there is none), so two cameras on one topic neither count each other's frames as
    lost nor double the rate.
    """

    def __init__(
        self,
        window: int = 300,
        min_intervals: int = 10,
        max_gap: int = 100,
        tolerance: float = 0.25,
        confirm: int = 3,
        stale_s: float = 3.0,
    ) -> None:
        self._lock = threading.Lock()
        self._new: list[tuple[Any, int, int | None]] = []
        self._tracks: dict[Any, _Track] = {}
        self.window = window
        self.min_intervals = min_intervals
        self.max_gap = max_gap
        self.tolerance = tolerance
        self.confirm = confirm
        self.stale_s = stale_s

    def add(self, stamp_ns: int, publisher: Any = None, sequence: int | None = None) -> None:
        """Records one received frame (any thread): its header stamp, the id of the publisher
        that sent it (hashable; None: one anonymous publisher) and its publication sequence
        number (None: the RMW gives none)."""
        with self._lock:
            self._new.append((publisher, stamp_ns, sequence))

    def update(self, now: float | None = None) -> dict[str, Any]:
        """Folds in the frames added since the last call.

        Returns:
            ``lost`` (so far, all publishers), ``lost_sequence`` and ``lost_stamps`` (its two
            sources), ``rate_hz`` (the frames per second that the publishers heard from in the
            last ``stale_s`` s send together; NaN before there is an estimate) and
            ``publishers`` (how many those are), ``sequenced`` (whether they come with
            sequence numbers, i.e. ``lost`` is exact).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            new, self._new = self._new, []
            for publisher, stamp, sequence in new:
                track = self._tracks.get(publisher)
                if track is None:
                    track = self._tracks[publisher] = _Track(self.window)
                track.seen_at = now
                self._fold(track, stamp, sequence)
            active = [t for t in self._tracks.values() if now - t.seen_at <= self.stale_s]
            rates = [r for r in (t.rate_hz() for t in active) if math.isfinite(r)]
            lost_seq = sum(t.lost_seq for t in self._tracks.values())
            lost_stamps = sum(t.lost_stamps for t in self._tracks.values())
            return {
                "lost": lost_seq + lost_stamps,
                "lost_sequence": lost_seq,
                "lost_stamps": lost_stamps,
                "rate_hz": float(sum(rates)) if rates else math.nan,
                "publishers": len(active),
                "sequenced": any(t.last_seq is not None for t in active),
            }

    def _fold(self, track: _Track, stamp: int, sequence: int | None) -> None:
        if sequence is not None:
            last = track.last_seq
            if last is not None and sequence > last + 1:
                track.lost_seq += sequence - last - 1
            if last is None or sequence > last:
                track.last_seq = sequence
                track.samples.append((stamp, sequence))
                while stamp - track.samples[0][0] > RATE_WINDOW_NS:
                    track.samples.popleft()
            elif sequence < last:  # a new writer with the same id: start afresh
                track.last_seq = sequence
                track.samples.clear()
                track.samples.append((stamp, sequence))
        last, track.last_stamp = track.last_stamp, stamp
        if last is None or stamp <= last:
            self._restart(track)
            return
        interval = stamp - last
        if track.period_ns is None:
            track.intervals.append(interval)
            if len(track.intervals) >= self.min_intervals:
                track.period_ns = float(np.median(track.intervals))
            return
        ratio = interval / track.period_ns
        if ratio > self.max_gap:
            self._restart(track)
            return
        if 1.0 / 1.5 <= ratio < 1.5:  # on the period: settles what was pending
            for gap in track.pending:
                if sequence is None:
                    track.lost_stamps += self._missing(gap / track.period_ns)
            track.pending.clear()
            track.intervals.append(interval)
            track.period_ns = float(np.median(track.intervals))
            return
        track.pending.append(interval)
        if len(track.pending) >= self.confirm:
            middle = float(np.median(track.pending))
            if all(abs(x - middle) <= self.tolerance * middle for x in track.pending):
                # a new rate, not losses: the estimate starts again from these intervals
                track.intervals.clear()
                track.intervals.extend(track.pending)
                track.period_ns = middle
            elif sequence is None:
                track.lost_stamps += self._missing(track.pending[0] / track.period_ns)
                track.pending.pop(0)
                return
            track.pending.clear()

    def _missing(self, ratio: float) -> int:
        """Frames missing in an interval of ``ratio`` periods: ``k - 1`` when it is within
        ``tolerance`` of an integer ``k >= 2``, else 0 (jitter, not a loss)."""
        k = round(ratio)
        return k - 1 if k >= 2 and abs(ratio - k) <= self.tolerance else 0

    def _restart(self, track: _Track) -> None:
        track.intervals.clear()
        track.pending.clear()
        track.period_ns = None


def adapted_reliability(offered: Iterable[str]) -> str:
    """The reliability an adaptive subscription takes, as rosbag2 adapts its recorder: the
    publishers' offered reliabilities (``"reliable"``, ``"best_effort"``, anything else counts
    as best effort) -> ``"reliable"`` when there is at least one and every one offers reliable,
    else ``"best_effort"`` (it matches every publisher; none yet: it matches the first)."""
    offered = [str(o).lower() for o in offered]
    if offered and all(o == "reliable" for o in offered):
        return "reliable"
    return "best_effort"


#: The environment variables a FastDDS process reads its XML profile from (Fast DDS 3, 2).
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


@dataclass(frozen=True)
class FrameInfo:
    """What the last received frame looked like, for an explanation: ``width`` x ``height``
    ``encoding`` (raw) or ``nbytes`` of compressed data."""

    width: int = 0
    height: int = 0
    encoding: str = ""
    nbytes: int = 0

    def describe(self) -> str:
        """``1280x1024 rgb8, 3.9 MB per frame`` (or ``250 kB JPEG/PNG data``); "" if unknown."""
        size = _megabytes(self.nbytes)
        if self.width and self.height:
            return f"{self.width}x{self.height} {self.encoding}, {size} per frame"
        return f"{size} per frame" if self.nbytes else ""


def _megabytes(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes >= 100_000 else f"{nbytes / 1e3:.0f} kB"


def starvation_fixes(transport: str, profile: str | None) -> list[str]:
    """The fixes that apply when frames are published but do not arrive, in the order to try
    them: the shipped FastDDS profile in the camera's process (``profile``: its installed
    path), the compressed transport (raw only), a smaller image."""
    path = profile or "<instrument_seg share>/config/fastdds_large_data.xml"
    fixes = [
        f"load the shipped FastDDS profile in the CAMERA's process (it acts where frames are "
        f"published): export {PROFILE_VARIABLES[0]}={path} (Fast DDS 2: "
        f"{PROFILE_VARIABLES[1]}) before starting the camera driver, then restart it",
    ]
    if transport == "raw":
        fixes.append(
            "or subscribe to the camera's compressed stream: transport:=compressed "
            "(image_transport's <image>/compressed, JPEG/PNG: a tenth of the bytes)"
        )
    else:
        fixes.append("or lower the camera's JPEG quality or PNG level")
    fixes.append("or publish a smaller image (binning or a resize in the camera driver)")
    return fixes


def starvation_message(
    topic: str,
    received: int,
    sent: int,
    seconds: float,
    publishers: int,
    frame: FrameInfo | None = None,
    offered: Iterable[str] = (),
    subscription: str = "",
) -> str:
    """What is happening, in one sentence, for the log and /diagnostics: how many of the frames
    the publishers sent in the last ``seconds`` arrived, on which topic, with the frame size
    and the QoS on both sides."""
    offered = sorted(set(offered))
    frame_text = frame.describe() if frame is not None else ""
    details = [d for d in (frame_text,) if d]
    if offered:
        details.append(f"publisher QoS {', '.join(offered)}")
    if subscription:
        details.append(f"this subscription {subscription}")
    return (
        f"frames on {topic} are published but do not get through: {received} of about {sent} "
        f"sent by {publishers} publisher(s) in the last {seconds:.0f} s arrived"
        + (f" ({'; '.join(details)})" if details else "")
        + "; large frames between processes on one host need shared memory, which FastDDS "
        "uses only when the publishing process loads a profile with a large enough segment"
    )


class DeliveryMonitor:
    """Decides when frames are published but do not arrive (plain Python; the node wires it).

    :meth:`update` is called about once a second with the running totals (frames received,
    frames lost in transport by sequence numbers or stamps, the RMW's message-lost events) and
    the rate the stamps or sequence numbers show; over the last ``window`` s it compares what
    arrived with what was sent. Starved: at least ``min_missing`` frames missing and fewer than
    ``ratio`` of the sent ones received, or a received rate below ``ratio`` x the publishers'
    rate (pass NaN where lost frames are counted exactly, by sequence numbers), for at least
    ``persist`` s in a row (a start-up transient is not reported). :attr:`problem` holds the
    current verdict (None: fine) for diagnostics;
    :meth:`should_warn` lets one warning through per ``warn_period`` s while it lasts.
    """

    def __init__(
        self,
        window: float = 3.0,
        ratio: float = 0.5,
        min_missing: int = 5,
        warn_period: float = 30.0,
        persist: float = 2.0,
    ) -> None:
        self.window = window
        self.ratio = ratio
        self.min_missing = min_missing
        self.warn_period = warn_period
        self.persist = persist
        self._since: float | None = None
        self._samples: collections.deque[tuple[float, int, int, int]] = collections.deque()
        self._last_warning: float | None = None
        self.problem: dict[str, Any] | None = None

    def update(
        self,
        now: float,
        publishers: int,
        received: int,
        lost: int,
        lost_dds: int,
        rate_hz: float = math.nan,
    ) -> dict[str, Any] | None:
        """Takes the totals at ``now`` (monotonic s); returns the verdict (also in
        :attr:`problem`): None, or ``received``, ``sent`` (received + missing) and ``seconds``
        of the window in which fewer than ``ratio`` arrived."""
        self._samples.append((now, received, lost, lost_dds))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        t0, r0, l0, d0 = self._samples[0]
        seconds = now - t0
        self.problem = None
        if publishers <= 0 or seconds < self.window * 0.9:
            self._since = None
            return None
        got = received - r0
        missing = max(lost - l0, lost_dds - d0)
        by_rate = rate_hz * seconds if math.isfinite(rate_hz) else 0.0
        sent = max(got + missing, int(round(by_rate)))
        if not (sent - got >= self.min_missing and got < self.ratio * sent):
            self._since = None
            return None
        if self._since is None:
            self._since = now
        if now - self._since >= self.persist:
            self.problem = {"received": got, "sent": sent, "seconds": seconds}
        return self.problem

    def should_warn(self, now: float) -> bool:
        """True when there is a problem and no warning was let through in the last
        ``warn_period`` s."""
        if self.problem is None:
            return False
        if self._last_warning is not None and now - self._last_warning < self.warn_period:
            return False
        self._last_warning = now
        return True


def percentiles_ms(seconds: Iterable[float], qs: tuple[float, ...]) -> tuple[float, ...]:
    """Percentiles ``qs`` of durations in seconds, in ms; NaN for each when there are none."""
    values = np.fromiter(seconds, float)
    if values.size == 0:
        return tuple(math.nan for _ in qs)
    return tuple(float(v) for v in 1000.0 * np.percentile(values, qs))


class RateLimiter:
    """Lets one event per key through every ``period`` seconds (for warnings)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """True when ``key`` was not allowed in the last ``period`` seconds."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period:
                return False
            self._last[key] = now
            return True
