"""Decoding image messages read by ``rosbags`` to NumPy, the semantics of cv_bridge's
``imgmsg_to_cv2`` (uncompressed encodings and JPEG / PNG data via
:mod:`instrument_seg.imagemsg`).

Strings read from a bag (encodings, formats) are untrusted: messages quote them through
:func:`~instrument_seg.imagemsg.safe_text`, so a bag cannot forge a log line.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from instrument_seg.data.bags.format import COMPRESSED_TYPE, FRAME_ENCODINGS, MASK_ENCODINGS
from instrument_seg.errors import InputError
from instrument_seg.imagemsg import (
    ImageFormatError,
    decode_compressed,
    image_to_array,
    image_to_rgb8,
    safe_text,
)


def _pixels(msg: Any, where: str) -> np.ndarray:
    """(H, W) or (H, W, C) view of an uncompressed Image message's data."""
    if msg.encoding not in MASK_ENCODINGS:
        raise InputError(
            f"{where} has unsupported encoding {safe_text(msg.encoding)} "
            f"(supported: {', '.join(MASK_ENCODINGS)})"
        )
    try:
        return image_to_array(msg)
    except ImageFormatError as exc:
        raise InputError(f"{where} is malformed ({exc})") from exc


def _decode_compressed(msg: Any, where: str) -> np.ndarray:
    """JPEG / PNG data as OpenCV's ``IMREAD_UNCHANGED`` gives it, checked first (a truncated
    or corrupt image is refused, with nothing printed by libjpeg or libpng)."""
    try:
        return decode_compressed(np.asarray(msg.data, np.uint8))
    except ImageFormatError as exc:
        raise InputError(
            f"{where} cannot be decoded (format {safe_text(msg.format)}: {exc})"
        ) from exc


def decode_frame(msg: Any, msgtype: str, where: str) -> np.ndarray:
    """A frame message as uint8 RGB (H, W, 3), a new contiguous array.

    Raises:
        InputError: unsupported encoding or malformed data (``where`` names topic and stamp).
    """
    if msgtype == COMPRESSED_TYPE:
        image = _decode_compressed(msg, where)
        if image.dtype == np.uint16:
            image = np.rint(image * (255.0 / 65535.0)).astype(np.uint8)
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(image, code)
    if msg.encoding not in FRAME_ENCODINGS:
        raise InputError(
            f"{where} has encoding {safe_text(msg.encoding)}, not a camera image "
            f"(supported: {', '.join(FRAME_ENCODINGS)})"
        )
    _pixels(msg, where)  # checks the layout, with the message's whereabouts in the error
    return np.ascontiguousarray(image_to_rgb8(msg))


def decode_mask(msg: Any, msgtype: str, where: str) -> np.ndarray:
    """A ground-truth message as bool (H, W): any non-zero pixel (any channel) is instrument."""
    if msgtype == COMPRESSED_TYPE:
        values = _decode_compressed(msg, where)
    else:
        values = _pixels(msg, where)
    if values.ndim == 3:
        values = values.max(axis=2)
    return np.asarray(values) > 0
