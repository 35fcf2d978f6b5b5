"""Latest-frame-wins mailbox, counters and warning rate limit (plain Python, no DDS)."""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from instrument_seg.ros.realtime import (
    Counters,
    DeliveryMonitor,
    FrameInfo,
    Mailbox,
    RateLimiter,
    StampGaps,
    adapted_reliability,
    percentiles_ms,
    starvation_fixes,
    starvation_message,
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

    def test_a_rate_change_is_not_a_loss(self):
        """30 Hz then 10 Hz, 500 of 500 frames received (the red team's case read lost 398):
        from the stamps alone, and with the publisher's sequence numbers."""
        rng = np.random.default_rng(1)
        stamps, t = [], 10**18
        for k in range(500):
            stamps.append(t)
            t += int(1e9 / 30 if k < 250 else 1e9 / 10) + int(rng.normal(0, 5e5))
        by_stamps, by_sequence = StampGaps(), StampGaps()
        for k, stamp in enumerate(stamps):
            by_stamps.add(stamp, "cam")
            by_sequence.add(stamp, "cam", k + 1)
        for gaps in (by_stamps, by_sequence):
            result = gaps.update()
            assert result["lost"] == 0, result
            assert 9 < result["rate_hz"] < 11, result  # the rate now, not the old one

    def test_two_publishers_on_one_topic(self):
        """Two cameras at 15 Hz on one topic, 600 of 600 received (read lost 1164 and 88.7 Hz):
        per publisher nothing is lost, and the topic carries 30 Hz."""
        a = [(10**18 + int(k * 1e9 / 15), "a", k + 1) for k in range(300)]
        b = [(10**18 + 12_345_678 + int(k * 1e9 / 15), "b", k + 1) for k in range(300)]
        frames = sorted(a + b)
        by_stamps, by_sequence = StampGaps(), StampGaps()
        for stamp, publisher, sequence in frames:
            by_stamps.add(stamp, publisher)
            by_sequence.add(stamp, publisher, sequence)
        for gaps in (by_stamps, by_sequence):
            result = gaps.update(now=time.monotonic())
            assert result["lost"] == 0, result
            assert 29.5 < result["rate_hz"] < 30.5 and result["publishers"] == 2, result

    def test_frames_missing_at_200_hz_are_counted(self):
        """200 Hz, 21 frames published but never received: the sequence numbers count exactly
        21 (where the DDS lost event said 0), the stamps alone 21 as well."""
        rng = np.random.default_rng(2)
        missing = set(rng.choice(np.arange(20, 1000), 21, replace=False).tolist())
        period = 5_000_000
        by_stamps, by_sequence = StampGaps(), StampGaps()
        for k in range(1000):
            if k in missing:
                continue
            stamp = 10**18 + k * period + int(rng.normal(0, 2e5))
            by_stamps.add(stamp)
            by_sequence.add(stamp, b"gid", k + 1)
        assert by_sequence.update()["lost_sequence"] == 21
        assert by_stamps.update()["lost_stamps"] == 21

    def test_sequence_numbers_count_what_stamps_cannot(self):
        """Heavy loss (1 frame in 10 arrives): the stamps see a steady 3 Hz camera, the
        sequence numbers the 90 % that never arrived and the real 30 Hz."""
        gaps = StampGaps()
        for k in range(0, 300, 10):
            gaps.add(10**18 + k * self.PERIOD, "cam", k + 1)
        result = gaps.update()
        assert result["lost"] == 261 and 29 < result["rate_hz"] < 31

    def test_jitter_of_half_a_period_is_not_a_loss(self):
        gaps = StampGaps()
        stamps = self.stamps(100)
        stamps[50] += self.PERIOD // 2  # late by half a period: 1.5 then 0.5 periods
        for stamp in stamps:
            gaps.add(stamp)
        assert gaps.update()["lost"] == 0


class TestAdaptedReliability:
    def test_reliable_only_when_every_publisher_is(self):
        assert adapted_reliability(["reliable", "reliable"]) == "reliable"
        assert adapted_reliability(["reliable", "best_effort"]) == "best_effort"
        assert adapted_reliability(["BEST_EFFORT"]) == "best_effort"
        assert adapted_reliability(["reliable", "unknown"]) == "best_effort"

    def test_no_publisher_is_best_effort(self):
        assert adapted_reliability([]) == "best_effort"


class TestDeliveryMonitor:
    def feed(self, monitor, seconds, rate, delivered, publishers=1, lost_dds_share=0.0):
        """Totals as a node sees them every 0.5 s: ``rate`` Hz sent, ``delivered`` of them
        arrive, the rest counted lost by sequence numbers. Returns the verdicts."""
        verdicts = []
        for step in range(int(seconds * 2) + 1):
            t = step * 0.5
            sent = int(rate * t)
            received = int(sent * delivered)
            lost = sent - received
            verdicts.append(
                monitor.update(t, publishers, received, lost, int(lost * lost_dds_share))
            )
        return verdicts

    def test_starved_within_a_few_seconds(self):
        monitor = DeliveryMonitor()
        verdicts = self.feed(monitor, 5.0, 30.0, 11 / 900)
        first = next(k for k, v in enumerate(verdicts) if v is not None) * 0.5
        assert first <= 5.0
        assert monitor.problem["received"] < 0.1 * monitor.problem["sent"]

    def test_fine_when_frames_arrive(self):
        monitor = DeliveryMonitor()
        assert not any(self.feed(monitor, 10.0, 30.0, 0.97))
        assert not any(self.feed(DeliveryMonitor(), 10.0, 30.0, 0.0, publishers=0))
        assert not any(self.feed(DeliveryMonitor(), 10.0, 1.0, 0.0))  # too few to judge

    def test_a_short_dip_is_not_reported(self):
        monitor = DeliveryMonitor(persist=2.0)
        verdicts = [monitor.update(t * 0.5, 1, 30 * t, 0, 0) for t in range(8)]
        verdicts += [monitor.update(4.0 + t * 0.5, 1, 120, 30 * t, 0) for t in range(1, 4)]
        assert not any(verdicts)

    def test_lost_events_alone_count(self):
        monitor = DeliveryMonitor()
        for step in range(12):
            verdict = monitor.update(step * 0.5, 1, step, 0, 20 * step)
        assert verdict is not None and verdict["received"] == 6

    def test_stamp_rate_alone_counts(self):
        monitor = DeliveryMonitor()
        for step in range(12):
            verdict = monitor.update(step * 0.5, 1, step, 0, 0, rate_hz=30.0)
        assert verdict is not None and verdict["sent"] >= 80

    def test_one_warning_per_period(self):
        monitor = DeliveryMonitor(warn_period=30.0)
        warned = []
        for step in range(200):  # 100 s of a starved stream
            t = step * 0.5
            monitor.update(t, 1, step, 30 * step, 0)
            warned.append(monitor.should_warn(t))
        assert 3 <= sum(warned) <= 4
        assert not DeliveryMonitor().should_warn(0.0)


class TestStarvationText:
    def test_says_what_and_how_to_fix(self):
        message = starvation_message(
            "/cam/image_raw", 3, 90, 3.0, 1, FrameInfo(1280, 1024, "rgb8", 3932160),
            ["best_effort"], "best_effort/volatile/keep_last 5",
        )
        for words in ("/cam/image_raw", "3 of about 90", "1280x1024 rgb8, 3.9 MB per frame",
                      "publisher QoS best_effort", "shared memory"):
            assert words in message
        fixes = starvation_fixes("raw", "/opt/share/instrument_seg/config/fastdds_large_data.xml")
        assert "export FASTDDS_DEFAULT_PROFILES_FILE=/opt/share/instrument_seg/config/" in fixes[0]
        assert "FASTRTPS_DEFAULT_PROFILES_FILE" in fixes[0] and "CAMERA" in fixes[0]
        assert "transport:=compressed" in fixes[1]
        assert "smaller image" in fixes[2]
        assert not any("transport:=compressed" in f for f in starvation_fixes("compressed", None))
