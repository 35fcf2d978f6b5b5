"""Image operations every layer shares: resizing frames and turning probability maps into masks.

This is the bottom of the package (numpy and OpenCV only), so the deployment path (inference,
the ROS node) thresholds exactly as training and evaluation do without importing them.
Thresholds follow the paper's conventions (docs/method.md section 4): Otsu by default, or the
authors' fixed 0.6 with small-component removal.
"""

from __future__ import annotations

import cv2
import numpy as np

from instrument_seg.errors import InputError

OFFICIAL_REFERENCE_AREA = 1280 * 1024
THRESHOLD_METHODS = ("otsu", "official")
OTSU_BINS = 256


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes a uint8 RGB frame to (H, W) with area interpolation."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes a mask to (H, W) with nearest-neighbour interpolation; returns bool.

    Nearest keeps the mask's area: a bilinear resize followed by ``> 0`` would dilate it.
    """
    if mask.shape[:2] == tuple(size):
        return mask.astype(bool)
    resized = cv2.resize(
        mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST
    )
    return resized > 0


def overlay(
    rgb: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = (0, 255, 0),
    alpha: float = 0.45,
) -> np.ndarray:
    """Blends a mask onto an RGB image.

    Args:
        rgb: uint8 (H, W, 3) RGB image.
        mask: bool (h, w) mask (any size: resized to (H, W) nearest-neighbour, so its area
            is kept, never dilated).
        color: RGB colour of the masked pixels.
        alpha: weight of ``color`` in the blend.

    Returns:
        uint8 (H, W, 3) RGB image.
    """
    mask = resize_mask(mask, rgb.shape[:2])
    out = rgb.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out.astype(np.uint8)


def otsu_threshold(prob: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Otsu's threshold of a map; a constant map yields its value (so nothing exceeds it).

    The histogram has 256 bins over the map's own range, exactly as scikit-image's
    ``threshold_otsu`` computes it (same counts, same bin centres, same float32 weights), so
    masks are bit-identical to it without importing scikit-image here.

    Args:
        prob: (H, W) map.
        valid: optional bool (H, W): only these pixels (the field of view) form the histogram.
    """
    values = np.asarray(prob, dtype=np.float64)
    if valid is not None and not valid.all():
        if valid.shape != values.shape:
            raise InputError(f"valid mask is {valid.shape} but the map is {values.shape}")
        values = values[valid]
        if values.size == 0:
            return float("inf")  # nothing is valid: nothing is foreground
    values = values.ravel()
    if values.size == 0:
        raise InputError("cannot threshold an empty map")
    if not np.all(np.isfinite(values)):
        raise InputError("map to threshold contains NaN or infinite values")
    if values.min() == values.max():
        return float(values[0])
    counts, edges = np.histogram(values, bins=OTSU_BINS)
    centers = (edges[:-1] + edges[1:]) / 2.0
    counts = counts.astype(np.float32)
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    mean1 = np.cumsum(counts * centers) / weight1
    mean2 = (np.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centers[np.argmax(variance12)])


def remove_small_components(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Drops 8-connected foreground components smaller than ``min_area`` pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def binarize(
    prob: np.ndarray,
    method: str = "otsu",
    value: float = 0.6,
    min_area: float = 10000,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Turns a probability map into a bool mask.

    Args:
        prob: (H, W) map in [0, 1].
        method: ``otsu`` (paper) or ``official`` (``prob > value`` then components smaller than
            ``min_area`` px at 1280x1024, scaled by image area, are removed).
        value: the official fixed threshold.
        min_area: the official minimum component area at 1280x1024.
        valid: optional bool (H, W) field of view: Otsu looks only there, and the mask is
            False everywhere else.
    """
    if valid is not None and valid.all():
        valid = None
    if method == "otsu":
        mask = prob > otsu_threshold(prob, valid)
        return mask if valid is None else mask & valid
    if method == "official":
        mask = prob > value if valid is None else (prob > value) & valid
        scaled = min_area * prob.shape[0] * prob.shape[1] / OFFICIAL_REFERENCE_AREA
        return remove_small_components(mask, scaled)
    raise InputError(
        f"unknown threshold method '{method}' (valid: {', '.join(THRESHOLD_METHODS)})"
    )


#: Grey level (0-255, after a 5x5 blur) under which a pixel is "black" for the field of view.
FOV_DARK_LEVEL = 10
#: A flat pixel (5x5 standard deviation under :data:`FOV_FLAT_STD`) is "black" up to this level:
#: the letterbox of a raw EndoVis frame is a uniform grey 15, not 0.
FOV_FLAT_DARK_LEVEL = 24
FOV_FLAT_STD = 2.0
#: A pixel is outside the field of view when it is black in at least this share of frames.
FOV_STATIC_SHARE = 0.9
#: The field of view is detected on frames shrunk to this longer side (speed; borders are big).
FOV_WORK_SIDE = 256
#: Less than this share of the frame outside the field of view counts as "no border".
FOV_MIN_OUTSIDE = 0.01
#: A letterbox or crop band thinner than the 5x5 window (EndoVis 2017's cropped frames have 5-9
#: rows of grey 15 at 1280x1024, one or two pixels at the working size) is found row by row:
#: rows (columns) at an edge whose mean is under :data:`FOV_FLAT_DARK_LEVEL` and whose
#: standard deviation is under :data:`FOV_FLAT_STD`, up to this share of the side.
FOV_MAX_BAND = 0.25


def field_of_view(frames: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Where the endoscope's optics show the scene: True inside, False on the black border.

    Laparoscopes image a circle (or a letterbox) inside a black frame. Outside pixels are found
    without labels: black (grey level under :data:`FOV_DARK_LEVEL`, or a flat dark grey under
    :data:`FOV_FLAT_DARK_LEVEL`) in at least
    :data:`FOV_STATIC_SHARE` of the frames (the border is static, instruments move), connected to
    the image border, and outside the convex hull of the largest lit region (so a dark
    instrument shaft that enters from the border, lit tissue on both sides, stays inside). Flat
    dark rows and columns at the frame's edges count as black however thin they are (the crop
    band of a cropped frame). Less than :data:`FOV_MIN_OUTSIDE` outside means the frame has no
    such border: all True.

    Args:
        frames: one uint8 (H, W, 3) RGB frame or several of the same size (one sequence).

    Returns:
        bool (H, W) mask, True inside the field of view.
    """
    stack = [frames] if isinstance(frames, np.ndarray) and frames.ndim == 3 else list(frames)
    if not stack:
        raise InputError("the field of view needs at least one frame")
    h, w = stack[0].shape[:2]
    scale = min(1.0, FOV_WORK_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    dark_count = np.zeros((size[1], size[0]), np.float32)
    for rgb in stack:
        if rgb.shape[:2] != (h, w):
            raise InputError(f"frames differ in size: {rgb.shape[:2]} and {(h, w)}")
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        mean = cv2.blur(small, (5, 5))
        std = np.sqrt(np.maximum(cv2.blur(small * small, (5, 5)) - mean * mean, 0.0))
        flat_dark = (mean < FOV_FLAT_DARK_LEVEL) & (std < FOV_FLAT_STD)
        dark_count += (mean < FOV_DARK_LEVEL) | flat_dark | _edge_bands(small)
    dark = (dark_count >= FOV_STATIC_SHARE * len(stack)).astype(np.uint8)
    outside = _border_connected(dark)
    lit = (outside == 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(lit, connectivity=8)
    if n <= 1:
        return np.ones((h, w), bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    points = cv2.findNonZero((labels == largest).astype(np.uint8))
    hull = np.zeros_like(lit)
    cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
    inside_small = (hull > 0) | (outside == 0)
    if 1.0 - inside_small.mean() < FOV_MIN_OUTSIDE:
        return np.ones((h, w), bool)
    inside = cv2.resize(inside_small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return inside > 0


def _edge_bands(gray: np.ndarray) -> np.ndarray:
    """bool (H, W): the flat dark rows and columns at the edges of a float32 grey frame (each
    side's run from the edge, at most :data:`FOV_MAX_BAND` of the side)."""
    h, w = gray.shape
    bands = np.zeros((h, w), bool)

    def run(lines: np.ndarray) -> int:  # lines: (n, length), the first one at the edge
        flat = (lines.mean(axis=1) < FOV_FLAT_DARK_LEVEL) & (lines.std(axis=1) < FOV_FLAT_STD)
        return int(np.argmin(flat)) if not flat.all() else len(flat)

    rows, cols = max(1, int(h * FOV_MAX_BAND)), max(1, int(w * FOV_MAX_BAND))
    top, bottom = run(gray[:rows]), run(gray[::-1][:rows])
    left, right = run(gray[:, :cols].T), run(gray[:, ::-1][:, :cols].T)
    bands[:top] = True
    bands[h - bottom :] = True
    bands[:, :left] = True
    bands[:, w - right :] = True
    return bands


def _border_connected(mask: np.ndarray) -> np.ndarray:
    """The components of a uint8 0/1 mask that touch the image border (uint8 0/1)."""
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep = np.zeros(n, np.uint8)
    keep[edge[edge > 0]] = 1
    return keep[labels]
