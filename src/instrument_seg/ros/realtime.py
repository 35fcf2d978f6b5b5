"""Real-time plumbing for nodes: a latest-frame-wins mailbox and running counters.

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
    flight; :meth:`snapshot` reports all of them.
    """

    def __init__(self, latency_window: int = 300) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.failed = 0
        self.overlays = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        self._latencies: collections.deque[float] = collections.deque(maxlen=latency_window)
        self._rate_mark = (time.monotonic(), 0)

    def add(self, name: str, n: int = 1) -> int:
        """Adds ``n`` to the counter ``name`` (received, processed, dropped, failed, overlays);
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

    def processed_with_latency(self, seconds: float) -> None:
        """Counts one processed frame whose receipt-to-publish latency was ``seconds``."""
        with self._lock:
            self.processed += 1
            self._latencies.append(seconds)

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
            out = {
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped,
                "rejected": sum(self.rejected.values()),
                "rejected_by_kind": dict(self.rejected),
                "failed": self.failed,
                "overlays": self.overlays,
            }
        elapsed = now - mark_time
        out["input_rate_hz"] = (out["received"] - mark_received) / elapsed if elapsed else 0.0
        out["latency_p50_ms"], out["latency_p95_ms"] = percentiles_ms(latencies, (50, 95))
        return out


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
