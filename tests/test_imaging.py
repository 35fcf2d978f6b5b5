"""Tests of instrument_seg.imaging: thresholds (scikit-image parity), resizing, field of view."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.filters import threshold_otsu

from instrument_seg.errors import InputError
from instrument_seg.imaging import (
    binarize,
    field_of_view,
    otsu_threshold,
    resize_mask,
)


class TestOtsu:
    @pytest.mark.parametrize("seed", range(6))
    def test_equals_scikit_image(self, seed):
        rng = np.random.default_rng(seed)
        kind = seed % 3
        if kind == 0:
            prob = rng.random((37, 53))
        elif kind == 1:  # bimodal, like a trained model's probabilities
            parts = [rng.normal(0.1, 0.05, 900), rng.normal(0.8, 0.1, 300)]
            prob = np.clip(np.concatenate(parts), 0, 1)
        else:  # few distinct values (histogram edges matter)
            prob = rng.integers(0, 5, (20, 30)) / 4.0
        assert otsu_threshold(prob) == float(threshold_otsu(np.asarray(prob, np.float64).ravel()))

    def test_constant_map(self):
        assert otsu_threshold(np.full((4, 4), 0.3)) == pytest.approx(0.3)
        assert not binarize(np.full((4, 4), 0.3)).any()

    def test_bad_maps(self):
        with pytest.raises(InputError, match="empty"):
            otsu_threshold(np.zeros((0, 3)))
        with pytest.raises(InputError, match="NaN"):
            otsu_threshold(np.array([0.1, np.nan]))

    def test_valid_region_only(self):
        """Zeros outside the field of view do not drag the threshold down."""
        prob = np.zeros((10, 10))
        prob[:, 5:] = np.linspace(0.2, 0.9, 50).reshape(10, 5)
        valid = np.zeros((10, 10), bool)
        valid[:, 5:] = True
        inside = otsu_threshold(prob, valid)
        assert inside == otsu_threshold(prob[:, 5:])
        assert inside > otsu_threshold(prob)
        mask = binarize(prob, valid=valid)
        assert not mask[:, :5].any() and mask[:, 5:].any() and not mask[:, 5:].all()
        official = binarize(np.ones((10, 10)), "official", min_area=0, valid=valid)
        assert (official == valid).all()


class TestResizeMask:
    def test_nearest_keeps_the_area(self):
        mask = np.zeros((64, 64), bool)
        mask[16:48, 16:48] = True
        small = resize_mask(mask, (16, 16))
        assert small.dtype == bool and small.sum() == 64
        # the bug this replaces: the flag passed as cv2.resize's dst, so the resize was bilinear
        block = np.zeros((10, 10), np.uint8)
        block[3:7, 3:7] = 255
        buggy = cv2.resize(block, (23, 23), cv2.INTER_NEAREST) > 0
        nearest = resize_mask(block, (23, 23))
        expected = cv2.resize(block, (23, 23), interpolation=cv2.INTER_NEAREST) > 0
        assert (nearest == expected).all()
        assert nearest.sum() < buggy.sum()  # bilinear then > 0 dilates


def _endoscope_frame(h=120, w=200, shaft=True, seed=0):
    """Red tissue in a black circle; optionally a dark shaft entering from the right border."""
    rng = np.random.default_rng(seed)
    rgb = np.zeros((h, w, 3), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    circle = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.55 * h) ** 2
    rgb[circle] = (170, 60, 60)
    rgb[circle] += rng.integers(0, 20, (circle.sum(), 3)).astype(np.uint8)
    shaft_mask = np.zeros((h, w), bool)
    if shaft:
        shaft_mask[h // 2 - 5 : h // 2 + 5, w // 2 :] = True
        shaft_mask &= circle
        rgb[shaft_mask] = (6, 6, 6)  # as black as the border
    return rgb, circle, shaft_mask


class TestFieldOfView:
    def test_black_circle_found(self):
        rgb, circle, _ = _endoscope_frame(shaft=False)
        fov = field_of_view(rgb)
        assert fov.shape == circle.shape
        assert (fov == circle).mean() > 0.97

    def test_dark_shaft_inside_the_circle_stays_inside(self):
        rgb, circle, shaft = _endoscope_frame(shaft=True)
        fov = field_of_view(rgb)
        assert fov[shaft].mean() > 0.95
        assert (fov == circle).mean() > 0.97

    def test_static_over_the_video(self):
        """A dark object that moves is inside in the sequence's field of view."""
        frames = []
        for k in range(10):
            rgb, circle, _ = _endoscope_frame(shaft=False, seed=k)
            rgb[10 + 8 * k : 20 + 8 * k, 90:110] = 0
            frames.append(rgb)
        assert (field_of_view(frames) == circle).mean() > 0.97

    def test_flat_grey_letterbox_is_outside(self):
        """Raw EndoVis frames: side bands of a uniform grey 15, not black."""
        rng = np.random.default_rng(0)
        rgb = np.full((108, 192, 3), 15, np.uint8)
        rgb[:, 32:160] = rng.integers(60, 200, (108, 128, 3))
        fov = field_of_view(rgb)
        assert not fov[:, :30].any() and not fov[:, 162:].any()
        assert fov[:, 34:158].all()

    def test_thin_crop_band_is_outside(self):
        """EndoVis 2017's cropped frames: a few rows of grey 15 at each edge, thinner than the
        detector's 5x5 window."""
        rng = np.random.default_rng(0)
        rgb = rng.integers(60, 200, (205, 256, 3)).astype(np.uint8)
        rgb[:2], rgb[-1:], rgb[:, :2], rgb[:, -2:] = 15, 15, 15, 15
        fov = field_of_view(rgb)
        assert not fov[:2].any() and not fov[-1:].any()
        assert not fov[:, :2].any() and not fov[:, -2:].any()
        assert fov[2:-1, 2:-2].all()

    def test_dark_textured_tissue_at_the_border_stays_inside(self):
        rng = np.random.default_rng(1)
        rgb = rng.integers(60, 200, (108, 192, 3)).astype(np.uint8)
        rgb[:, :30] = rng.integers(5, 35, (108, 30, 3))  # dark but textured: a shadow
        assert field_of_view(rgb).all()

    def test_no_border_means_all_inside(self):
        rgb = np.full((40, 60, 3), 120, np.uint8)
        assert field_of_view(rgb).all()
        assert field_of_view(np.zeros((40, 60, 3), np.uint8)).all()  # all black: no view found

    def test_bad_input(self):
        with pytest.raises(InputError, match="at least one frame"):
            field_of_view([])
        with pytest.raises(InputError, match="differ in size"):
            field_of_view([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])
