"""Errors that reach the user as one clear sentence, and the common input check raising one."""

from __future__ import annotations

from typing import Any


class InputError(Exception):
    """Bad input from the user: a file, directory, topic or value that cannot be used.

    The message is one sentence naming the offending file, topic or value. The CLI prints it
    after ``error:`` and exits with status 2; library callers can catch it.
    """


def check_rgb(rgb: Any, what: str = "image", min_side: int = 1) -> None:
    """Raises :class:`InputError` unless ``rgb`` is a uint8 (H, W, 3) array, H and W >= min_side.

    Args:
        rgb: the candidate image.
        what: how the message names it (e.g. ``"frame 3 of the batch"``).
        min_side: smallest accepted height and width.
    """
    import numpy as np

    if not isinstance(rgb, np.ndarray):
        raise InputError(f"{what} must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise InputError(f"{what} has dtype {rgb.dtype}; expected uint8 (H, W, 3) RGB")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"{what} has shape {rgb.shape}; expected (H, W, 3) RGB")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"{what} has zero size {rgb.shape[:2]}")
    if min(rgb.shape[:2]) < min_side:
        raise InputError(
            f"{what} is {rgb.shape[0]}x{rgb.shape[1]}; at least {min_side}x{min_side} is needed"
        )
