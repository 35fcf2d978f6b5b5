"""Tests of cues.motion: residual optical flow marks what moves against the scene."""

from __future__ import annotations

import numpy as np
import pytest

from instrument_seg.config import load_config
from instrument_seg.cues.motion import motion_cue, residual_motion, sequence_motion
from instrument_seg.cues.pipeline import dataset_cues
from instrument_seg.data import load_dataset
from instrument_seg.errors import InputError


def _moving_bar(n: int = 4, pan: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A textured background panning ``pan`` px per frame, a grey bar moving 4 px down."""
    rng = np.random.default_rng(0)
    texture = (rng.random((96, 160, 3)) * 255).astype(np.uint8)
    import cv2

    texture = cv2.GaussianBlur(texture, (0, 0), 2)
    frames, masks = [], []
    for t in range(n):
        rgb = np.roll(texture, pan * t, axis=1)[:64, :128].copy()
        mask = np.zeros((64, 128), bool)
        mask[10 + 4 * t : 22 + 4 * t, 20:90] = True
        stripes = (140 + 40 * ((np.arange(70) // 6) % 2)).astype(np.uint8)  # texture to track
        rgb[10 + 4 * t : 22 + 4 * t, 20:90] = stripes[None, :, None]
        frames.append(rgb)
        masks.append(mask)
    return frames, masks


class TestMotion:
    def test_moving_object_against_a_panning_scene(self):
        frames, masks = _moving_bar()
        cues = sequence_motion(frames)
        assert len(cues) == len(frames)
        for cue, mask in zip(cues[1:], masks[1:], strict=True):
            assert cue.dtype == np.float32 and 0 <= cue.min() and cue.max() <= 1
            assert cue[mask].mean() > 3 * cue[~mask].mean()

    def test_static_scene_gives_no_evidence(self):
        frame = _moving_bar(1)[0][0]
        assert not motion_cue(residual_motion(np.zeros((*frame.shape[:2], 2), np.float32))).any()
        assert not sequence_motion([frame, frame])[1].any()
        assert not sequence_motion([frame])[0].any()

    def test_bad_input(self):
        with pytest.raises(InputError, match="at least one frame"):
            sequence_motion([])
        with pytest.raises(InputError, match="differ in size"):
            sequence_motion([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)])

    def test_stills_refuse_motion(self, generic_tree):
        config = load_config(
            overrides=[
                "data.still_images=true",
                "cues.enabled=[color,motion]",
                "cues.cache_dir=null",
                "data.size=[48,64]",
            ]
        )
        with pytest.raises(InputError, match="motion cue needs video"):
            dataset_cues(load_dataset(generic_tree), config)

    def test_in_the_pipeline(self, generic_tree):
        config = load_config(
            overrides=["cues.enabled=[color,motion]", "cues.cache_dir=null", "data.size=[48,64]"]
        )
        frames = dataset_cues(load_dataset(generic_tree), config)
        assert set(frames[0].cues) == {"color", "motion"}
        a_pos, _ = frames[1].anchors(["color", "motion"])
        assert a_pos.shape == (48, 64)
