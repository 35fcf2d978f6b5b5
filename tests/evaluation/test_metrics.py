import numpy as np
import pytest

from instrument_seg.errors import InputError
from instrument_seg.evaluation.metrics import (
    EPS,
    dice,
    iou,
    precision,
    recall,
    score,
    summarize,
)
from instrument_seg.imaging import binarize, otsu_threshold, remove_small_components


class TestScores:
    def test_empty_on_empty_scores_one(self):
        empty = np.zeros((4, 4), bool)
        assert iou(empty, empty) == 1.0 and dice(empty, empty) == 1.0

    def test_prediction_on_empty_gt_scores_zero(self):
        pred = np.zeros((4, 4), bool)
        pred[0, 0] = True
        gt = np.zeros((4, 4), bool)
        assert iou(pred, gt) == pytest.approx(EPS / (1 + EPS))
        assert dice(pred, gt) < 1e-14

    def test_known_overlap(self):
        pred = np.zeros((2, 4), bool)
        gt = np.zeros((2, 4), bool)
        pred[:, :2] = True  # 4 px
        gt[:, 1:3] = True  # 4 px, 2 shared
        assert iou(pred, gt) == pytest.approx(2 / 6)
        assert dice(pred, gt) == pytest.approx(4 / 8)

    def test_shape_mismatch(self):
        with pytest.raises(InputError, match="prediction is"):
            iou(np.zeros((2, 2)), np.zeros((3, 3)))

    def test_summary(self):
        s = summarize([0.5, 1.0])
        assert s == {"mean": 0.75, "std": 0.25, "n": 2}


class TestThresholds:
    def test_otsu_separates_two_modes(self):
        prob = np.r_[np.full(50, 0.1), np.full(50, 0.9)]
        t = otsu_threshold(prob)
        assert 0.1 <= t < 0.9
        assert binarize(prob.reshape(10, 10)).sum() == 50

    def test_constant_map_gives_empty_mask(self):
        assert not binarize(np.full((5, 5), 0.7)).any()

    def test_nan_map_is_rejected(self):
        with pytest.raises(InputError, match="NaN"):
            otsu_threshold(np.array([0.1, np.nan]))

    def test_official_threshold_and_component_removal(self):
        prob = np.zeros((1024, 1280), np.float32)
        prob[:200, :200] = 0.7  # 40000 px: kept
        prob[500:550, 500:550] = 0.9  # 2500 px: removed (< 10000)
        prob[800:900, 800:900] = 0.55  # under 0.6
        mask = binarize(prob, "official", 0.6, 10000)
        assert mask[:200, :200].all() and mask.sum() == 40000

    def test_official_area_scales_with_resolution(self):
        prob = np.zeros((256, 320), np.float32)
        prob[:30, :30] = 0.9  # 900 px >= 10000 / 16 = 625: kept
        prob[100:120, 100:120] = 0.9  # 400 px: removed
        assert binarize(prob, "official").sum() == 900

    def test_remove_small_components(self):
        m = np.zeros((5, 5), bool)
        m[0, 0] = True
        m[2:5, 2:5] = True
        assert remove_small_components(m, 2).sum() == 9

    def test_unknown_method(self):
        with pytest.raises(InputError, match="unknown threshold method 'mean'"):
            binarize(np.zeros((2, 2)), "mean")

    def test_score_resizes_map_to_ground_truth(self):
        gt = np.zeros((40, 40), bool)
        gt[:, :20] = True
        prob = np.zeros((10, 10), np.float32)
        prob[:, :5] = 1.0
        s = score(prob, gt)
        assert s["iou"] > 0.9 and s["dice"] > 0.9

    def test_precision_and_recall_by_hand(self):
        gt = np.zeros((4, 4), bool)
        gt[:2] = True  # 8 pixels
        pred = np.zeros((4, 4), bool)
        pred[:1] = True  # 4 pixels, all instrument
        pred[3, 0] = True  # and one false positive
        assert precision(pred, gt) == pytest.approx(4 / 5)
        assert recall(pred, gt) == pytest.approx(4 / 8)
        empty = np.zeros((4, 4), bool)
        assert precision(empty, empty) == pytest.approx(1.0)
        assert recall(empty, gt) == pytest.approx(0.0)
        s = score(pred.astype(np.float32), gt, method="official", value=0.5, min_area=0)
        assert s["precision"] == pytest.approx(4 / 5) and s["recall"] == pytest.approx(0.5)
