"""Tests of instrument_seg.cues.refine: highlights, temporal fusion, the border prior."""

from __future__ import annotations

import numpy as np
import pytest

from instrument_seg.config import load_config
from instrument_seg.cues.pipeline import FrameCues, dataset_anchors
from instrument_seg.cues.refine import (
    DEFAULTS,
    border_connected,
    check_settings,
    highlight_mask,
    refine_sequence,
    temporal_fuse,
)
from instrument_seg.errors import InputError
from instrument_seg.evaluation.cue_scores import REFINED, evaluate_cues, format_table

RED = (170, 40, 50)
GREY = (120, 120, 125)


def _texture(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 4, w // 4, 3)).astype(np.uint8)
    return np.kron(small, np.ones((4, 4, 1), np.uint8))


class TestSettings:
    def test_defaults_are_the_config_section(self) -> None:
        assert load_config()["anchors"] == DEFAULTS

    def test_unknown_key(self) -> None:
        with pytest.raises(InputError, match="anchors.bogus"):
            check_settings({"bogus": 1})

    @pytest.mark.parametrize(
        ("key", "value"),
        [("temporal", -1), ("temporal", 1.5), ("border", "yes"), ("highlight_value", 2.0)],
    )
    def test_bad_values(self, key, value) -> None:
        with pytest.raises(InputError, match=f"anchors.{key}"):
            check_settings({key: value})


class TestHighlights:
    def test_white_blob_on_tissue_is_a_highlight(self) -> None:
        img = np.full((40, 40, 3), RED, np.uint8)
        img[10:13, 10:13] = 250
        mask = highlight_mask(img)
        assert mask[11, 11] and mask[9, 9]  # the blob and its one-pixel halo
        assert not mask[30, 30]

    def test_white_blob_on_grey_metal_is_not(self) -> None:
        img = np.full((40, 40, 3), RED, np.uint8)
        img[5:35, 5:20] = GREY  # a tool
        img[10:13, 10:13] = 250  # its reflection
        assert not highlight_mask(img).any()

    def test_large_white_region_is_not(self) -> None:
        img = np.full((40, 40, 3), RED, np.uint8)
        img[:, :10] = 250  # a quarter of the view: a bright tool, not a glint
        assert not highlight_mask(img).any()


class TestBorder:
    def test_parts_away_from_the_border_go(self) -> None:
        a = np.zeros((40, 50), np.float32)
        a[15:25, 0:12] = 0.9  # enters from the left edge
        a[15:25, 25:35] = 0.9  # floats in the middle
        out = border_connected(a)
        assert out[20, 5] == pytest.approx(0.9) and out[20, 30] == 0.0
        assert out.dtype == np.float32

    def test_the_border_is_the_field_of_view(self) -> None:
        yy, xx = np.mgrid[:60, :60]
        view = (yy - 30) ** 2 + (xx - 30) ** 2 < 28**2
        a = np.zeros((60, 60), np.float32)
        a[27:33, 3:15] = 0.8  # reaches the circle's edge, not the image's
        a[27:33, 25:35] = 0.8
        out = border_connected(a * view, view)
        assert out[30, 8] > 0 and out[30, 30] == 0.0

    def test_empty_anchor_is_unchanged(self) -> None:
        a = np.zeros((10, 10), np.float32)
        np.testing.assert_array_equal(border_connected(a), a)


class TestTemporal:
    def test_one_frame_noise_is_voted_out(self) -> None:
        frames = [_texture()] * 5
        maps = [np.zeros((64, 80), np.float32) for _ in range(5)]
        for m in maps:
            m[20:40, 0:20] = 1.0  # a tool in every frame
        maps[2][40:50, 50:60] = 1.0  # noise in one
        fused = temporal_fuse(frames, maps, 2)
        assert fused[2][30, 10] == pytest.approx(1.0)
        assert fused[2][45, 55] == pytest.approx(0.0)
        np.testing.assert_array_equal(temporal_fuse(frames, maps, 0)[2], maps[2])

    def test_neighbours_are_warped_by_the_flow(self) -> None:
        base = _texture(64, 120, seed=3)
        frames, maps = [], []
        for t in range(5):  # the scene and its tool slide right 3 px a frame
            frames.append(np.ascontiguousarray(base[:, 20 - 3 * t : 100 - 3 * t]))
            m = np.zeros((64, 80), np.float32)
            m[20:40, 30 + 3 * t : 45 + 3 * t] = 1.0
            maps.append(m)
        fused = temporal_fuse(frames, maps, 2)[2]
        own = maps[2] > 0.5
        got = fused > 0.5
        assert (got & own).sum() / (got | own).sum() > 0.8

    def test_length_mismatch(self) -> None:
        with pytest.raises(InputError, match="2 frames but 1 maps"):
            temporal_fuse([_texture()] * 2, [np.zeros((64, 80), np.float32)], 1)


class TestPipeline:
    def _frames(self) -> list[FrameCues]:
        out = []
        for seq in ("a", "b"):
            for i in range(3):
                img = np.full((32, 40, 3), RED, np.uint8)
                img[10:20, 0:10] = GREY
                c = np.zeros((32, 40), np.float32)
                c[10:20, 0:10] = 0.9
                if seq == "a" and i == 1:
                    c[20:26, 25:31] = 0.9  # a blob in the middle of one frame
                gt = np.zeros((32, 40), bool)
                gt[10:20, 0:10] = True
                out.append(FrameCues(seq, f"{i:03d}", img, {"color": c}, gt))
        return out

    def test_off_is_the_fused_cues(self) -> None:
        frames = self._frames()
        got = dataset_anchors(frames, ["color"])
        for fc, (pos, neg) in zip(frames, got, strict=True):
            np.testing.assert_array_equal(pos, fc.cues["color"])
            np.testing.assert_allclose(neg, 1.0 - fc.cues["color"])

    def test_refined_per_sequence(self) -> None:
        frames = self._frames()
        got = dataset_anchors(frames, ["color"], {"border": True, "temporal": 1})
        assert len(got) == 6
        assert got[1][0][23, 28] == 0.0 and got[1][0][15, 5] > 0.5

    def test_valid_stays_zero_outside(self) -> None:
        frames = [_texture(32, 40, s) for s in range(3)]
        view = np.zeros((32, 40), bool)
        view[4:28, 4:36] = True
        anchors = [(np.full((32, 40), 0.5, np.float32) * view,) * 2 for _ in range(3)]
        out = refine_sequence(frames, anchors, view, {"temporal": 1})
        for pos, neg in out:
            assert not pos[~view].any() and not neg[~view].any()

    def test_cue_scores_report_the_refined_anchor(self) -> None:
        config = load_config(overrides=["cues.enabled=[color]", "anchors.border=true"])
        report = evaluate_cues(self._frames(), config)
        row = report["combinations"][REFINED]["a_pos"]
        assert set(row) == {"iou", "dice", "precision", "recall"}
        raw = report["combinations"]["color"]["a_pos"]
        assert row["precision"]["mean"] > raw["precision"]["mean"]
        assert "| refined |" in format_table(report["combinations"])
