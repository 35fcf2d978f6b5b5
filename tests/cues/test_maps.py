import cv2
import numpy as np
import pytest

from instrument_seg.cues.maps import (
    centre_prior,
    check_rgb,
    color_cue,
    sequence_cues,
    video_location_cue,
)
from instrument_seg.errors import InputError


def solid(rgb, h=4, w=4):
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


class TestColorCue:
    def test_known_values(self):
        # pure grey: LAB a = 128 (neutral), saturation 0 -> (1 - 128/255) * 1
        grey = color_cue(solid((128, 128, 128)))
        np.testing.assert_allclose(grey, 1 - 128 / 255, atol=1e-6)
        # pure red: a-channel and saturation from OpenCV's 8-bit conversions
        red = solid((255, 0, 0))
        a = cv2.cvtColor(red, cv2.COLOR_RGB2LAB)[0, 0, 1] / 255
        np.testing.assert_allclose(color_cue(red), (1 - a) * (1 - 1.0), atol=1e-6)

    def test_grey_metal_beats_red_tissue(self):
        assert color_cue(solid((150, 150, 155))).mean() > 0.4
        assert color_cue(solid((180, 60, 60))).mean() < 0.2

    def test_range_and_dtype(self):
        rng = np.random.default_rng(0)
        c = color_cue(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        assert c.dtype == np.float32 and c.min() >= 0 and c.max() <= 1

    @pytest.mark.parametrize(
        "bad",
        [
            np.zeros((4, 4), np.uint8),
            np.zeros((4, 4, 3), np.float32),
            np.zeros((0, 4, 3), np.uint8),
        ],
    )
    def test_bad_input(self, bad):
        with pytest.raises(InputError):
            check_rgb(bad)


class TestLocation:
    def test_video_prior_is_mean_colour_map(self):
        maps = [np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)]
        np.testing.assert_allclose(video_location_cue(maps), 0.5)

    def test_centre_prior_peaks_in_the_middle(self):
        p = centre_prior((21, 31), 0.25)
        assert p[10, 15] == pytest.approx(1.0, abs=1e-3)
        assert p[0, 0] < 0.2 and p.shape == (21, 31)
        np.testing.assert_allclose(p, p[::-1, ::-1], atol=1e-6)

    def test_bad_sigma(self):
        with pytest.raises(InputError, match="still_sigma"):
            centre_prior((4, 4), 0)


class TestSequenceCues:
    def test_all_cues_present_and_location_shared(self):
        frames = [solid((150, 150, 150), 32, 40), solid((180, 60, 60), 32, 40)]
        cues = sequence_cues(frames)
        assert set(cues[0]) == {"color", "objectness", "location"}
        np.testing.assert_allclose(
            cues[0]["location"], (cues[0]["color"] + cues[1]["color"]) / 2, atol=1e-6
        )

    def test_subset_only_computes_what_is_asked(self):
        cues = sequence_cues([solid((1, 2, 3), 32, 40)], names=["location"], still_images=True)
        assert set(cues[0]) == {"location"}
        np.testing.assert_allclose(cues[0]["location"], centre_prior((32, 40)))

    def test_frames_of_different_size(self):
        with pytest.raises(InputError, match="differ in size"):
            sequence_cues([solid((1, 2, 3), 32, 40), solid((1, 2, 3), 40, 40)])
