"""Pre- and post-processing shared by every backend, so all of them see the same numbers.

Frames go in as uint8 RGB of any size: they are resized to the model's input size with the
interpolation training used (``imaging.resize_rgb``, area), scaled to [0, 1], normalised with
the model's mean/std and laid out NCHW. Probabilities come back at input size, are resized to
each frame's own size (bilinear) and clipped to [0, 1]; masks come from ``imaging.binarize``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from instrument_seg.errors import InputError, check_rgb
from instrument_seg.imaging import THRESHOLD_METHODS, binarize, resize_rgb
from instrument_seg.inference.contract import ModelContract


def check_image(rgb: Any, what: str = "image") -> None:
    """Raises :class:`InputError` unless ``rgb`` is a non-empty uint8 (H, W, 3) array."""
    check_rgb(rgb, what)


def normalize(frames: np.ndarray, contract: ModelContract) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W): ``(x / 255 - mean) / std``.

    The same float32 arithmetic, in the same order, as ``train.to_input``.
    """
    x = frames.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(contract.mean, np.float32)) / np.asarray(contract.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def prepare(frames: Sequence[np.ndarray], contract: ModelContract) -> np.ndarray:
    """Checked uint8 RGB frames of any sizes -> float32 (N, 3, H, W) network input.

    Raises:
        InputError: a frame that is not a non-empty uint8 (H, W, 3) array.
    """
    if len(frames) == 0:
        raise InputError("no frames to segment (empty batch)")
    resized = []
    for k, rgb in enumerate(frames):
        check_image(rgb, "image" if len(frames) == 1 else f"frame {k} of the batch")
        resized.append(resize_rgb(rgb, contract.input_size))
    return normalize(np.stack(resized), contract)


def restore(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """float (h, w) probabilities at model size -> float32 (H, W) at ``shape``, in [0, 1]."""
    p = np.asarray(prob, dtype=np.float32)
    if p.shape != tuple(shape):
        p = cv2.resize(p, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(p, 0.0, 1.0)


def to_mask(
    prob: np.ndarray, threshold: Mapping[str, Any], valid: np.ndarray | None = None
) -> np.ndarray:
    """float32 (H, W) probabilities -> uint8 (H, W) mask in {0, 255} via ``imaging.binarize``
    (thresholded inside ``valid``, the field of view, when given)."""
    return binarize(prob, **threshold, valid=valid).astype(np.uint8) * np.uint8(255)


def resolve_threshold(threshold: Any, default: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``imaging.binarize`` for a user's threshold choice.

    Args:
        threshold: None (``default``), ``"otsu"``, ``"official"`` (``default``'s value and
            minimum area) or a number in (0, 1) (fixed threshold, nothing removed); a string
            holding such a number is accepted too.
        default: the model's stored threshold settings.

    Raises:
        InputError: anything else.
    """
    base = {"method": "otsu", "value": 0.6, "min_area": 10000.0, **dict(default)}
    if threshold is None:
        return base
    if isinstance(threshold, str) and threshold.strip().lower() in THRESHOLD_METHODS:
        return {**base, "method": threshold.strip().lower()}
    value = None
    if isinstance(threshold, (int, float, str)) and not isinstance(threshold, bool):
        try:
            value = float(threshold)
        except ValueError:
            value = None
    if value is None or not math.isfinite(value) or not 0.0 < value < 1.0:
        raise InputError(
            f"threshold {threshold!r} is not otsu, official or a number between 0 and 1"
        )
    return {"method": "official", "value": value, "min_area": 0.0}
