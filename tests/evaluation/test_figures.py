"""Figures: the mask overlay and the Fig.-2 panels (with and without a prediction column)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from instrument_seg.config import load_config
from instrument_seg.cues.pipeline import FrameCues
from instrument_seg.evaluation.figures import overlay, spread, write_fig2_panels


def _changed(rgb: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.any(out != rgb, axis=2)


class TestOverlay:
    def test_same_size_blends_only_the_mask(self):
        rgb = np.full((4, 6, 3), 100, np.uint8)
        mask = np.zeros((4, 6), bool)
        mask[1, 2] = True
        out = overlay(rgb, mask, color=(0, 255, 0), alpha=0.5)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(_changed(rgb, out), mask)
        np.testing.assert_array_equal(out[1, 2], [50, 177, 50])

    @pytest.mark.parametrize("factor", [2, 3, 5])
    def test_upscaled_mask_is_nearest_neighbour(self, factor):
        """Each mask pixel becomes a factor x factor block: never grown, shrunk or blurred
        (the old ``cv2.resize(mask, size, cv2.INTER_NEAREST)`` passed the flag as ``dst`` and
        resized bilinearly: a single pixel upscaled 3x covered 1 pixel, not 9)."""
        mask = np.zeros((5, 5), bool)
        mask[2, 2] = True
        mask[0, 3:5] = True
        rgb = np.full((5 * factor, 5 * factor, 3), 90, np.uint8)
        expected = np.kron(mask, np.ones((factor, factor), bool))
        np.testing.assert_array_equal(_changed(rgb, overlay(rgb, mask)), expected)

    def test_downscaled_mask_keeps_nearest_values(self):
        rng = np.random.default_rng(0)
        mask = rng.random((48, 60)) > 0.5
        rgb = np.full((32, 40, 3), 90, np.uint8)
        expected = cv2.resize(mask.astype(np.uint8), (40, 32), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(_changed(rgb, overlay(rgb, mask)), expected > 0)


class Half:
    """A predictor: P = 0.5 everywhere."""

    def __init__(self) -> None:
        self.calls = 0

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.full(rgb.shape[:2], 0.5, np.float32)


def _frames(n: int, h: int = 24, w: int = 32) -> list[FrameCues]:
    rng = np.random.default_rng(1)
    frames = []
    for i in range(n):
        cues = {k: rng.random((h, w)).astype(np.float32) for k in ("color", "location")}
        gt = np.zeros((2 * h, 2 * w), bool)
        gt[h // 2 : h, : w // 2] = True
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        frames.append(FrameCues("seq_a", f"f{i:03d}", image, cues, gt if i % 2 else None))
    return frames


class TestFig2Panels:
    @pytest.mark.parametrize("with_predictor", [False, True])
    def test_evenly_spaced_panels(self, tmp_path, with_predictor):
        config = load_config([], ["figures.max_frames=3", "cues.enabled=[color,location]"])
        frames = _frames(7)
        predictor = Half() if with_predictor else None
        out = tmp_path / "new" / "figs"  # parents are created
        written = write_fig2_panels(out, frames, config, predictor=predictor)
        names = [f"seq_a_{frames[k].name}.png" for k in spread(7, 3)]
        assert [p.name for p in written] == names == sorted(p.name for p in out.iterdir())
        assert all(cv2.imread(str(p)) is not None for p in written)
        assert predictor is None or predictor.calls == 3

    def test_prediction_adds_a_column(self, tmp_path):
        config = load_config([], ["figures.max_frames=1", "cues.enabled=[color,location]"])
        frames = _frames(1)
        plain = write_fig2_panels(tmp_path / "a", frames, config)[0]
        with_p = write_fig2_panels(tmp_path / "b", frames, config, predictor=Half())[0]
        assert cv2.imread(str(with_p)).shape[1] > cv2.imread(str(plain)).shape[1]

    def test_no_frames_no_panels(self, tmp_path):
        config = load_config([], ["figures.max_frames=4"])
        assert write_fig2_panels(tmp_path / "f", [], config) == []
