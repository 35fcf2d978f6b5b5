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


def otsu_threshold(prob: np.ndarray) -> float:
    """Otsu's threshold of a map; a constant map yields its value (so nothing exceeds it).

    The histogram has 256 bins over the map's own range, exactly as scikit-image's
    ``threshold_otsu`` computes it (same counts, same bin centres, same float32 weights), so
    masks are bit-identical to it without importing scikit-image here.
    """
    values = np.asarray(prob, dtype=np.float64).ravel()
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
    prob: np.ndarray, method: str = "otsu", value: float = 0.6, min_area: float = 10000
) -> np.ndarray:
    """Turns a probability map into a bool mask.

    Args:
        prob: (H, W) map in [0, 1].
        method: ``otsu`` (paper) or ``official`` (``prob > value`` then components smaller than
            ``min_area`` px at 1280x1024, scaled by image area, are removed).
        value: the official fixed threshold.
        min_area: the official minimum component area at 1280x1024.
    """
    if method == "otsu":
        return prob > otsu_threshold(prob)
    if method == "official":
        mask = prob > value
        scaled = min_area * prob.shape[0] * prob.shape[1] / OFFICIAL_REFERENCE_AREA
        return remove_small_components(mask, scaled)
    raise InputError(
        f"unknown threshold method '{method}' (valid: {', '.join(THRESHOLD_METHODS)})"
    )
