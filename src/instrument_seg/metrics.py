"""Thresholds and per-frame scores with the paper's conventions."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from instrument_seg.errors import InputError

EPS = 1e-15
OFFICIAL_REFERENCE_AREA = 1280 * 1024
THRESHOLD_METHODS = ("otsu", "official")


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise InputError(f"prediction is {pred.shape} but ground truth is {gt.shape}")


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """``(|P∩G| + eps) / (|P∪G| + eps)``; an empty prediction on empty ground truth scores 1."""
    _check_pair(pred, gt)
    p, g = pred.astype(bool), gt.astype(bool)
    return float((np.logical_and(p, g).sum() + EPS) / (np.logical_or(p, g).sum() + EPS))


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """``(2|P∩G| + eps) / (|P| + |G| + eps)``."""
    _check_pair(pred, gt)
    p, g = pred.astype(bool), gt.astype(bool)
    return float((2 * np.logical_and(p, g).sum() + EPS) / (p.sum() + g.sum() + EPS))


def otsu_threshold(prob: np.ndarray) -> float:
    """Otsu's threshold of a map; a constant map yields its value (so nothing exceeds it)."""
    values = np.asarray(prob, dtype=np.float64).ravel()
    if values.size == 0:
        raise InputError("cannot threshold an empty map")
    if not np.all(np.isfinite(values)):
        raise InputError("map to threshold contains NaN or infinite values")
    if values.min() == values.max():
        return float(values[0])
    return float(threshold_otsu(values))


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


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean and population standard deviation over frames."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)}


def score(prob: np.ndarray, gt: np.ndarray, **threshold) -> dict[str, float]:
    """IoU and Dice of a map against ground truth, the map resized to the ground truth first.

    ``threshold`` holds the keyword arguments of :func:`binarize`.
    """
    if prob.shape != gt.shape:
        prob = cv2.resize(prob.astype(np.float32), gt.shape[::-1], interpolation=cv2.INTER_LINEAR)
    pred = binarize(prob, **threshold)
    return {"iou": iou(pred, gt), "dice": dice(pred, gt)}
