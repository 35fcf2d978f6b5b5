"""Per-frame scores with the paper's conventions (thresholds: :mod:`instrument_seg.imaging`)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from instrument_seg.errors import InputError
from instrument_seg.imaging import binarize, resize_mask

EPS = 1e-15


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


def precision(pred: np.ndarray, gt: np.ndarray) -> float:
    """``(|P∩G| + eps) / (|P| + eps)``: the share of the prediction that is instrument."""
    _check_pair(pred, gt)
    p, g = pred.astype(bool), gt.astype(bool)
    return float((np.logical_and(p, g).sum() + EPS) / (p.sum() + EPS))


def recall(pred: np.ndarray, gt: np.ndarray) -> float:
    """``(|P∩G| + eps) / (|G| + eps)``: the share of the instrument that is predicted."""
    _check_pair(pred, gt)
    p, g = pred.astype(bool), gt.astype(bool)
    return float((np.logical_and(p, g).sum() + EPS) / (g.sum() + EPS))


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean and population standard deviation over frames."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)}


def score(
    prob: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None, **threshold
) -> dict[str, float]:
    """IoU, Dice, precision and recall of a map against ground truth, the map resized to the
    ground truth first.

    Args:
        prob: (h, w) map.
        gt: bool (H, W) ground truth.
        valid: optional bool field of view (any size; resized nearest to (H, W)): thresholded
            there only, foreground nowhere else.
        **threshold: keyword arguments of :func:`instrument_seg.imaging.binarize`.
    """
    if prob.shape != gt.shape:
        prob = cv2.resize(prob.astype(np.float32), gt.shape[::-1], interpolation=cv2.INTER_LINEAR)
    if valid is not None:
        valid = resize_mask(valid, gt.shape)
    pred = binarize(prob, valid=valid, **threshold)
    return {
        "iou": iou(pred, gt),
        "dice": dice(pred, gt),
        "precision": precision(pred, gt),
        "recall": recall(pred, gt),
    }
