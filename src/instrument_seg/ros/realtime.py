"""Real-time plumbing for nodes: a latest-frame-wins mailbox, running counters, loss estimate.

Plain Python (no rclpy), so it is unit-tested without DDS. The node's subscription callback
puts each frame into a one-slot :class:`Mailbox` on the executor thread; a worker thread takes
the newest one. A frame that was still waiting when a newer one arrived is replaced (and counted
as dropped), so the node never builds a backlog whatever the camera rate.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Iterable
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
        self.rejected: collections.Counter[str] = collections.Counter()
        self._latencies: collections.deque[float] = collections.deque(maxlen=latency_window)
        self._e2e: collections.deque[float] = collections.deque(maxlen=latency_window)
        self._rate_mark = (time.monotonic(), 0)
        self.gaps = StampGaps()

    def add(self, name: str, n: int = 1) -> int:
        """Adds ``n`` to the counter ``name`` (received, processed, dropped, failed, overlays,
        lost_dds, qos_incompatible, outputs_skipped);
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
            }
        gaps = self.gaps.update()
        out["lost_estimated"] = gaps["lost"]
        out["lost"] = max(out["lost_dds"], gaps["lost"])
        out["stamp_rate_hz"] = gaps["rate_hz"]
        elapsed = now - mark_time
        out["input_rate_hz"] = (out["received"] - mark_received) / elapsed if elapsed else 0.0
        out["latency_p50_ms"], out["latency_p95_ms"] = percentiles_ms(latencies, (50, 95))
        out["e2e_latency_p50_ms"], out["e2e_latency_p95_ms"] = percentiles_ms(e2e, (50, 95))
        return out


class StampGaps:
    """Frames lost before the node saw them, estimated from gaps in the header stamps.

    The executor thread only records each received stamp (:meth:`add`, cheap); :meth:`update`
    (from the diagnostics timer) estimates the camera's frame period as a low percentile of the
    recent stamp intervals (robust to the gaps themselves) and counts a gap of ``k`` periods as
    ``k - 1`` lost frames. A stamp that goes back, repeats, or jumps by more than
    ``max_gap`` periods (a restarted camera, a looped bag) starts a new segment, uncounted; no
    estimate before ``min_intervals`` intervals were seen.
    """

    def __init__(
        self, window: int = 300, min_intervals: int = 10, max_gap: int = 100, quantile: float = 10
    ) -> None:
        self._lock = threading.Lock()
        self._new: list[int] = []
        self._intervals: collections.deque[int] = collections.deque(maxlen=window)
        self._last: int | None = None
        self.min_intervals = min_intervals
        self.max_gap = max_gap
        self.quantile = quantile
        self.lost = 0
        self.period_ns: float | None = None

    def add(self, stamp_ns: int) -> None:
        """Records the stamp of one received frame (any thread)."""
        with self._lock:
            self._new.append(stamp_ns)

    def update(self) -> dict[str, Any]:
        """Folds in the stamps added since the last call; returns ``lost`` (so far) and
        ``rate_hz`` (1 / estimated period; NaN before there is one)."""
        with self._lock:
            new, self._new = self._new, []
            for stamp in new:
                last, self._last = self._last, stamp
                if last is None or stamp <= last:
                    continue
                interval = stamp - last
                if self.period_ns is not None and interval > self.max_gap * self.period_ns:
                    continue
                self._intervals.append(interval)
                if len(self._intervals) >= self.min_intervals:
                    self.period_ns = float(np.percentile(self._intervals, self.quantile))
                    self.lost += max(0, round(interval / self.period_ns) - 1)
            rate = 1e9 / self.period_ns if self.period_ns else math.nan
            return {"lost": self.lost, "rate_hz": rate}


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
