"""Window machinery of the ``alexe`` objectness (Alexe, Deselaers & Ferrari, TPAMI 2012).

A coarse grid of cells over the image and integral images over it, windows sampled with
uniform expected coverage (many crossing the image border, then clipped), the paper's four
window cues scored from per-pixel inputs (saliency maps, LAB colours, an edge map, superpixel
labels), rank normalisation, and the accumulation of window scores into a pixel map.
:func:`instrument_seg.cues.objectness.alexe_objectness` puts them together (the module
docstring there lists the deviations from the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.stats import rankdata

# --------------------------------------------------------------------------------------------
# Grid of cells, integral images and windows (alexe)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A coarse grid of cells over the image; windows have their corners on cell boundaries.

    Attributes:
        shape: (H, W) of the image.
        cells: (gh, gw) number of cell rows and columns.
        index: int64 (H, W) flat cell index ``row * gw + col`` of every pixel.
        ys: int64 (gh + 1,) pixel row of each horizontal cell boundary.
        xs: int64 (gw + 1,) pixel column of each vertical cell boundary.
    """

    shape: tuple[int, int]
    cells: tuple[int, int]
    index: np.ndarray
    ys: np.ndarray
    xs: np.ndarray

    @classmethod
    def over(cls, shape: tuple[int, int], grid_size: int) -> Grid:
        """Grid whose longer side has about ``grid_size`` cells (at most one cell per pixel)."""
        h, w = shape
        step = max(1.0, max(h, w) / grid_size)
        gh, gw = max(2, round(h / step)), max(2, round(w / step))
        ys = np.round(np.arange(gh + 1) * h / gh).astype(np.int64)
        xs = np.round(np.arange(gw + 1) * w / gw).astype(np.int64)
        rows = np.searchsorted(ys, np.arange(h), side="right") - 1
        cols = np.searchsorted(xs, np.arange(w), side="right") - 1
        return cls(shape, (gh, gw), rows[:, None] * gw + cols[None, :], ys, xs)

    def cell_sums(self, values: np.ndarray) -> np.ndarray:
        """Sum a float (H, W) map per cell -> float64 (gh, gw)."""
        n = self.cells[0] * self.cells[1]
        sums = np.bincount(self.index.ravel(), weights=values.ravel(), minlength=n)
        return sums.reshape(self.cells)

    def cell_counts(self, labels: np.ndarray, n_labels: int) -> np.ndarray:
        """Count each label per cell: int (H, W) labels in [0, n_labels) -> (gh, gw, n_labels)."""
        n = self.cells[0] * self.cells[1]
        flat = self.index.ravel() * n_labels + labels.ravel()
        counts = np.bincount(flat, minlength=n * n_labels)
        return counts.reshape(self.cells + (n_labels,))


def integral(cells: np.ndarray) -> np.ndarray:
    """Integral image with a zero first row and column: (gh, gw, ...) -> (gh + 1, gw + 1, ...)."""
    dtype = np.float64 if cells.dtype.kind == "f" else np.int64
    out = np.zeros((cells.shape[0] + 1, cells.shape[1] + 1) + cells.shape[2:], dtype)
    out[1:, 1:] = cells.cumsum(0).cumsum(1)
    return out


def box_sums(ii: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray):
    """Sums over boxes [y0, y1) x [x0, x1) (cell units) from an integral image -> (N, ...)."""
    return ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]


@dataclass(frozen=True)
class Windows:
    """Sampled windows, clipped to the grid; half-open cell coordinates, each (N,) int64.

    Attributes:
        x0, y0, x1, y1: Window corners in cells.
        at_border: bool (N, 4): the left, top, right, bottom side lies on the image border.
    """

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    at_border: np.ndarray


def sample_windows(
    cells: tuple[int, int], n_windows: int, size_range: tuple[float, float], seed: int
) -> Windows:
    """Sample windows with uniform expected coverage, many crossing the border, then clip.

    Widths and heights are drawn independently, log-uniform in ``size_range`` times the grid
    side (so long thin windows occur); centres are uniform over the grid grown by half the
    window on each side, which covers every cell equally often in expectation. Windows left
    with less than 2 cells of width or height after clipping are dropped.
    """
    gh, gw = cells
    rng = np.random.default_rng(seed)
    lo, hi = np.log(size_range[0]), np.log(size_range[1])
    corners = []
    for side in (gw, gh):
        size = np.exp(rng.uniform(lo, hi, n_windows)) * side
        centre = rng.uniform(-size / 2, side + size / 2)
        start = np.round(centre - size / 2).astype(np.int64)
        stop = start + np.maximum(1, np.round(size).astype(np.int64))
        corners.append((np.clip(start, 0, side), np.clip(stop, 0, side)))
    (x0, x1), (y0, y1) = corners
    keep = (x1 - x0 >= 2) & (y1 - y0 >= 2)
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    at_border = np.stack([x0 == 0, y0 == 0, x1 == gw, y1 == gh], axis=1)
    return Windows(x0, y0, x1, y1, at_border)


# --------------------------------------------------------------------------------------------
# The four cues of Alexe et al. (each returns (N,) float64 scores, higher = more object-like)
# --------------------------------------------------------------------------------------------


def cue_ms(grid: Grid, win: Windows, saliency: list[np.ndarray], quantile: float) -> np.ndarray:
    """Multi-scale saliency: per scale, sum of salient values in the window times the salient
    fraction of the window (salient: above the map's ``quantile``); scales combined by the
    mean of their max-scaled scores. ``saliency``: one (H, W) map per scale."""
    area = box_sums(integral(grid.cell_sums(np.ones(grid.shape))), win.x0, win.y0, win.x1, win.y1)
    total = np.zeros(len(win.x0))
    for sal in saliency:
        salient = sal >= float(np.quantile(sal, quantile))
        mass = box_sums(integral(grid.cell_sums(sal * salient)), win.x0, win.y0, win.x1, win.y1)
        count = box_sums(
            integral(grid.cell_sums(salient.astype(np.float64))), win.x0, win.y0, win.x1, win.y1
        )
        score = mass * count / area
        total += score / max(float(score.max()), 1e-12)
    return total / len(saliency)


def _lab_bins(rgb: np.ndarray, bins: tuple[int, int, int]) -> np.ndarray:
    """Quantise LAB colours into ``prod(bins)`` joint bins with per-image quantile edges.

    Returns:
        int64 (H, W) bin index.
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    index = np.zeros(lab.shape[0], np.int64)
    for c, n in enumerate(bins):
        edges = np.quantile(lab[:, c], np.linspace(0, 1, n + 1)[1:-1])
        index = index * n + np.searchsorted(edges, lab[:, c], side="right")
    return index.reshape(rgb.shape[:2])


def cue_cc(
    rgb: np.ndarray, grid: Grid, win: Windows, bins: tuple[int, int, int], surround: float
) -> np.ndarray:
    """Colour contrast: chi-square distance between the LAB histogram of the window and that
    of its surrounding ring (the window grown ``surround`` times per side, clipped to the image).
    Windows whose clipped ring is under 5% of their area score 0."""
    n_bins = int(np.prod(bins))
    ii = integral(grid.cell_counts(_lab_bins(rgb, bins), n_bins).astype(np.int32))
    gh, gw = grid.cells
    grow_x = np.round((win.x1 - win.x0) * (surround - 1) / 2).astype(np.int64)
    grow_y = np.round((win.y1 - win.y0) * (surround - 1) / 2).astype(np.int64)
    ox0, ox1 = np.maximum(win.x0 - grow_x, 0), np.minimum(win.x1 + grow_x, gw)
    oy0, oy1 = np.maximum(win.y0 - grow_y, 0), np.minimum(win.y1 + grow_y, gh)
    inner = box_sums(ii, win.x0, win.y0, win.x1, win.y1).astype(np.float64)
    ring = box_sums(ii, ox0, oy0, ox1, oy1) - inner
    n_in, n_ring = inner.sum(1, keepdims=True), ring.sum(1, keepdims=True)
    p, q = inner / np.maximum(n_in, 1), ring / np.maximum(n_ring, 1)
    chi2 = 0.5 * np.sum((p - q) ** 2 / np.maximum(p + q, 1e-12), axis=1)
    return np.where(n_ring[:, 0] >= 0.05 * n_in[:, 0], chi2, 0.0)


def cue_ed(grid: Grid, win: Windows, edges: np.ndarray, ring: float) -> np.ndarray:
    """Edge density: edge mass in the inner border ring (``ring`` x the window side thick)
    per pixel of ring length, over the sides that do not lie on the image border (an
    instrument cut by the border has no edge there). Windows with all sides on the border
    score 0."""
    ii = integral(grid.cell_sums(edges))
    cell_h, cell_w = grid.shape[0] / grid.cells[0], grid.shape[1] / grid.cells[1]
    wid, hei = win.x1 - win.x0, win.y1 - win.y0
    tx = np.clip(np.round(ring * wid), 1, wid // 2).astype(np.int64)
    ty = np.clip(np.round(ring * hei), 1, hei // 2).astype(np.int64)
    strips = (  # left, top, right, bottom: (x0, y0, x1, y1), length in pixels
        ((win.x0, win.y0 + ty, win.x0 + tx, win.y1 - ty), hei * cell_h),
        ((win.x0, win.y0, win.x1, win.y0 + ty), wid * cell_w),
        ((win.x1 - tx, win.y0 + ty, win.x1, win.y1 - ty), hei * cell_h),
        ((win.x0, win.y1 - ty, win.x1, win.y1), wid * cell_w),
    )
    mass = np.zeros(len(wid))
    length = np.zeros(len(wid))
    for side, (box, side_length) in enumerate(strips):
        use = ~win.at_border[:, side]
        mass += np.where(use, box_sums(ii, *box), 0.0)
        length += np.where(use, side_length, 0.0)
    return np.where(length > 0, mass / np.maximum(length, 1e-12), 0.0)


def superpixels(rgb: np.ndarray, scale: float, min_size: int) -> np.ndarray:
    """Felzenszwalb & Huttenlocher (IJCV 2004) graph-based superpixels -> int32 (H, W) labels."""
    segmenter = cv2.ximgproc.segmentation.createGraphSegmentation(
        sigma=0.8, k=float(scale), min_size=int(min_size)
    )
    return segmenter.processImage(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)).astype(np.int32)


def cue_ss(grid: Grid, win: Windows, labels: np.ndarray) -> np.ndarray:
    """Superpixel straddling: 1 - sum over superpixels s of min(|s in w|, |s out of w|) / |w|."""
    n_labels = int(labels.max()) + 1
    counts = grid.cell_counts(labels, n_labels).astype(np.int32)
    inside = box_sums(integral(counts), win.x0, win.y0, win.x1, win.y1)
    sizes = counts.sum(axis=(0, 1))
    straddle = np.minimum(inside, sizes[None, :] - inside).sum(1)
    return 1.0 - straddle / np.maximum(inside.sum(1), 1)


# --------------------------------------------------------------------------------------------
# Window scores -> pixel map
# --------------------------------------------------------------------------------------------


def rank01(scores: np.ndarray) -> np.ndarray:
    """Rank-normalise to (0, 1] (ties share their mean rank); a constant cue gives all 0.5."""
    if float(np.ptp(scores)) <= 1e-12 * max(1.0, float(np.abs(scores).max())):
        return np.full(scores.shape, 0.5)
    return rankdata(scores) / len(scores)


def accumulate(
    shape: tuple[int, int], boxes: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sum window scores and window counts per pixel with a 2-D difference array.

    Args:
        shape: (H, W) of the map.
        boxes: int (N, 4) pixel boxes ``x0, y0, x1, y1``, half-open, inside the image.
        scores: (N,) window scores.

    Returns:
        float64 (H, W) score sum and float64 (H, W) number of covering windows.
    """
    h, w = shape
    out = []
    for weights in (scores, np.ones_like(scores)):
        diff = np.zeros((h + 1, w + 1))
        x0, y0, x1, y1 = boxes.T
        np.add.at(diff, (y0, x0), weights)
        np.add.at(diff, (y0, x1), -weights)
        np.add.at(diff, (y1, x0), -weights)
        np.add.at(diff, (y1, x1), weights)
        out.append(diff.cumsum(0).cumsum(1)[:h, :w])
    return out[0], out[1]
