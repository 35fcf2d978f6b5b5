"""Latest-frame-wins mailbox, counters and warning rate limit (plain Python, no DDS)."""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from instrument_seg.ros.realtime import (
    Counters,
    Mailbox,
    RateLimiter,
    StampGaps,
    percentiles_ms,
)


class TestMailbox:
    def test_newest_wins_and_replacements_are_reported(self):
        box = Mailbox()
        assert box.put(1) is False
        assert box.put(2) is True
        assert box.put(3) is True
        assert box.get(timeout=0) == 3
        assert box.get(timeout=0.01) is None  # empty again: no backlog was kept
        assert box.put(4) is False

    def test_get_waits_for_a_producer(self):
        box = Mailbox()
        threading.Timer(0.05, box.put, args=("frame",)).start()
        start = time.monotonic()
        assert box.get(timeout=5) == "frame"
        assert time.monotonic() - start < 4

    def test_close_wakes_a_waiting_consumer(self):
        box = Mailbox()
        box.put("pending")
        box.close()
        assert box.get(timeout=0) is None
        box2 = Mailbox()
        got = []
        consumer = threading.Thread(target=lambda: got.append(box2.get()))
        consumer.start()
        time.sleep(0.05)
        box2.close()
        consumer.join(timeout=5)
        assert not consumer.is_alive() and got == [None]

    def test_fast_producer_slow_consumer_accounting(self):
        """Every put is either consumed or reported as replaced; the last one is consumed."""
        box = Mailbox()
        consumed, replaced = [], 0
        done = threading.Event()

        def consume():
            while (item := box.get()) is not None:
                consumed.append(item)
                time.sleep(0.002)
            done.set()

        worker = threading.Thread(target=consume)
        worker.start()
        for k in range(500):
            replaced += box.put(k)
        deadline = time.monotonic() + 5
        while (not consumed or consumed[-1] != 499) and time.monotonic() < deadline:
            time.sleep(0.005)
        box.close()
        worker.join(timeout=5)
        assert consumed[-1] == 499
        assert consumed == sorted(consumed)
        assert len(consumed) + replaced == 500
        assert replaced > 0


class TestCounters:
    def test_snapshot(self):
        counters = Counters(latency_window=3)
        for _ in range(5):
            counters.add("received")
        counters.add("dropped")
        counters.reject("length")
        counters.reject("length")
        counters.reject("encoding")
        for seconds in (0.5, 0.010, 0.020, 0.030):  # the first falls out of the window
            counters.processed_with_latency(seconds)
        snap = counters.snapshot()
        assert snap["received"] == 5 and snap["dropped"] == 1 and snap["processed"] == 4
        assert snap["rejected"] == 3 and snap["rejected_by_kind"] == {"length": 2, "encoding": 1}
        assert math.isclose(snap["latency_p50_ms"], 20.0)
        assert 20.0 < snap["latency_p95_ms"] <= 30.0
        assert snap["input_rate_hz"] > 0
        assert counters.snapshot()["input_rate_hz"] == 0.0  # nothing new since

    def test_end_to_end_and_loss_counters(self):
        counters = Counters()
        counters.processed_with_latency(0.010, 0.050)
        counters.processed_with_latency(0.010, None)  # stamp not on this clock: left out
        counters.add("lost_dds", 3)
        counters.add("qos_incompatible")
        snap = counters.snapshot()
        assert math.isclose(snap["e2e_latency_p50_ms"], 50.0)
        assert snap["lost_dds"] == 3 and snap["lost"] == 3 and snap["qos_incompatible"] == 1

    def test_no_latency_yet_is_nan(self):
        assert all(math.isnan(v) for v in percentiles_ms([], (50, 95)))


def test_rate_limiter_is_per_key():
    limiter = RateLimiter(period=0.2)
    assert limiter.allow("length") and limiter.allow("encoding")
    assert not limiter.allow("length")
    time.sleep(0.25)
    assert limiter.allow("length")


class TestStampGaps:
    PERIOD = 33_333_333

    def stamps(self, n: int, skip=(), jitter: float = 0.0, start: int = 10**18):
        rng = np.random.default_rng(0)
        return [
            start + k * self.PERIOD + int(rng.normal(0, jitter))
            for k in range(n)
            if k not in skip
        ]

    def test_counts_the_frames_missing_between_stamps(self):
        gaps = StampGaps()
        skip = {20, 21, 22, 50, 77}
        for stamp in self.stamps(100, skip, jitter=1e6):
            gaps.add(stamp)
        result = gaps.update()
        assert result["lost"] == len(skip)
        assert 29 < result["rate_hz"] < 32

    def test_no_estimate_before_enough_intervals(self):
        gaps = StampGaps(min_intervals=10)
        for stamp in self.stamps(8, skip={3}):
            gaps.add(stamp)
        assert gaps.update()["lost"] == 0 and math.isnan(gaps.update()["rate_hz"])

    def test_restart_and_repeat_start_a_new_segment(self):
        gaps = StampGaps()
        for stamp in self.stamps(30) + self.stamps(30, start=10**17) + self.stamps(3)[-1:] * 3:
            gaps.add(stamp)
        assert gaps.update()["lost"] == 0  # a camera restart is not a loss

    def test_incremental_updates(self):
        gaps = StampGaps()
        stamps = self.stamps(60, skip={40})
        for stamp in stamps[:30]:
            gaps.add(stamp)
        assert gaps.update()["lost"] == 0
        for stamp in stamps[30:]:
            gaps.add(stamp)
        assert gaps.update()["lost"] == 1
