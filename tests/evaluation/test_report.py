"""report.py: pairing masks with ground truth by stamp, statistics, report files (no ROS)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from instrument_seg.evaluation.metrics import dice, iou
from instrument_seg.evaluation.report import (
    StreamScorer,
    build_report,
    jitter_ms,
    latency_stats,
    markdown,
    summary_line,
    write_report,
)


def masks(seed: int, shape=(20, 30)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(shape) > 0.5, rng.random(shape) > 0.4


class TestStreamScorer:
    def test_scores_with_metrics_whichever_arrives_first(self):
        scorer = StreamScorer()
        gt_a, pred_a = masks(0)
        gt_b, pred_b = masks(1)
        scorer.expect(10, gt_a, "s", "a", sent_at=1.0, now=1.0)
        assert scorer.answer(10, pred_a.astype(np.uint8) * 255, received_at=1.25)
        assert not scorer.answer(20, pred_b, received_at=2.5)  # mask before its ground truth
        scorer.expect(20, gt_b, "s", "b", now=2.6)
        a, b = scorer.results
        assert (a.status, b.status) == ("answered", "answered")
        assert a.iou == iou(pred_a, gt_a) and a.dice == dice(pred_a, gt_a)
        assert b.iou == iou(pred_b, gt_b)
        assert a.latency_ms == pytest.approx(250.0) and b.latency_ms is None
        # listen mode: the frame's receipt handled after its mask (executor order)
        scorer.sent(20, 2.0)
        assert b.latency_ms == pytest.approx(500.0)
        scorer.sent(20, 1.0)  # the first receipt counts
        assert b.latency_ms == pytest.approx(500.0)

    def test_send_time_before_ground_truth(self):
        scorer = StreamScorer()
        gt, pred = masks(2)
        scorer.sent(5, 1.0)  # listen mode: the image arrived first
        scorer.expect(5, gt, "s", "f", now=1.01)
        scorer.answer(5, pred, received_at=1.1)
        assert scorer.results[0].latency_ms == pytest.approx(100.0)

    def test_expiry_late_duplicate_and_bad_size(self):
        scorer = StreamScorer()
        gt, pred = masks(3)
        scorer.expect(1, gt, "s", "1", now=0.0)
        scorer.expect(2, gt, "s", "2", now=5.0)
        scorer.expect(3, gt, "s", "3", now=5.0)
        assert scorer.expire(older_than=1.0) == 1
        scorer.answer(1, pred)  # after its time-out
        scorer.answer(2, pred)
        scorer.answer(2, pred)  # a second mask for the same frame
        scorer.answer(3, pred[:10])  # wrong size
        assert scorer.late == 1 and scorer.duplicates == 1
        assert [r.status for r in scorer.results] == ["missed", "answered", "bad_mask"]
        assert scorer.counts() == {
            "frames": 3,
            "answered": 1,
            "missed": 1,
            "bad_mask": 1,
            "pending": 0,
        }

    def test_duplicate_ground_truth_is_ignored(self):
        scorer = StreamScorer()
        gt, _ = masks(4)
        first = scorer.expect(7, gt, "s", "7")
        assert scorer.expect(7, gt, "s", "7 again") is first
        assert len(scorer.results) == 1 and scorer.duplicates == 1

    def test_wait_answered_from_another_thread(self):
        scorer = StreamScorer()
        gt, pred = masks(5)
        scorer.expect(9, gt, "s", "9")
        assert not scorer.wait_answered(9, 0.05)
        threading.Timer(0.05, scorer.answer, (9, pred)).start()
        assert scorer.wait_answered(9, 5.0)
        assert scorer.wait_all(0.0)

    def test_finish_counts_the_rest_as_missed(self):
        scorer = StreamScorer()
        scorer.expect(1, masks(6)[0], "s", "1")
        scorer.finish()
        assert scorer.results[0].status == "missed"


class TestStatistics:
    def test_latency_and_jitter(self):
        stats = latency_stats([10.0, 20.0, 30.0, 40.0])
        assert stats == {"p50": 25.0, "p95": 38.5, "max": 40.0, "mean": 25.0, "n": 4}
        assert jitter_ms([10.0, 14.0, 12.0]) == pytest.approx(3.0)
        assert np.isnan(latency_stats([])["p50"]) and np.isnan(jitter_ms([1.0]))


def make_report() -> dict:
    scorer = StreamScorer()
    for k in range(4):
        gt, pred = masks(10 + k)
        scorer.expect(k, gt, "seq" if k < 2 else "other", f"f{k}", sent_at=float(k), now=k)
        if k != 2:
            scorer.answer(k, pred, received_at=k + 0.02 + 0.01 * k)
    scorer.finish()
    return build_report(scorer.results, {"mode": "replay", "pace": "lockstep"}, {"x": 1})


class TestReport:
    def test_content(self):
        report = make_report()
        assert report["frames_total"] == 4 and report["frames_answered"] == 3
        assert report["frames_missed"] == 1 and report["iou"]["n"] == 3
        ious = [f["iou"] for f in report["frames"] if f["iou"] is not None]
        assert report["iou"]["mean"] == pytest.approx(np.mean(ious))
        assert report["iou"]["std"] == pytest.approx(np.std(ious))
        assert report["latency_ms"]["n"] == 3 and report["x"] == 1
        assert report["publish_lag_ms"] is None
        line = summary_line(report)
        assert line.startswith("3/4 frame(s) answered (1 missed), IoU ")
        assert "latency p50 " in line

    def test_files(self, tmp_path):
        report = make_report()
        paths = write_report(report, tmp_path / "out")
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
            "iou_over_time.png",
            "latency_histogram.png",
            "report.json",
            "report.md",
        ]
        data = json.loads(paths["json"].read_text())  # strict JSON: NaN written as null
        assert data["frames"][2]["iou"] is None and data["latency_jitter_ms"] is not None
        text = paths["markdown"].read_text()
        assert "| other | f2 | 2 | missed | - | - | n/a |" in text
        for key in ("iou", "latency"):
            assert paths[key].read_bytes()[:4] == b"\x89PNG"

    def test_markdown_with_nothing_answered(self):
        scorer = StreamScorer()
        scorer.expect(1, masks(0)[0], "s", "1")
        scorer.finish()
        text = markdown(build_report(scorer.results, {"mode": "listen"}, {}))
        assert "| 1 | 0 | 1 | 0 | n/a | n/a |" in text
