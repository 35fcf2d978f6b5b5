"""``sensor_msgs/Image`` <-> NumPy without cv_bridge, zero-copy wherever the layout allows.

Semantics follow cv_bridge's ``imgmsg_to_cv2`` / ``cv2_to_imgmsg`` (cv_bridge itself cannot be
installed here, and its PyPI namesake is a stale ROS 1 copy broken on NumPy 2). Reading
(:func:`image_to_array`, :func:`image_to_rgb8`, :class:`ImageFormatError`) needs no ROS and lives
in :mod:`instrument_seg.imagemsg`, shared with the bag reader; this module adds
:func:`array_to_image`, ``cv2_to_imgmsg(array, encoding)`` plus the header: a dense message
(``step`` = width x pixel size) whose byte order is the array's.
"""

from __future__ import annotations

import array
import sys

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from instrument_seg.imagemsg import (
    ENCODINGS,
    INPUT_ENCODINGS,
    ImageFormatError,
    check_image,
    image_to_array,
    image_to_rgb8,
)

__all__ = [
    "ENCODINGS",
    "INPUT_ENCODINGS",
    "ImageFormatError",
    "array_to_image",
    "check_image",
    "image_to_array",
    "image_to_rgb8",
]


def stamp_ns(header: Header) -> int:
    """A header's stamp in integer nanoseconds (the evaluation node's pairing key)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def array_to_image(array_: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """A dense ``sensor_msgs/Image`` holding ``array_`` (cv_bridge ``cv2_to_imgmsg``).

    Args:
        array_: (H, W) or (H, W, C) with the encoding's dtype and channel count; any strides
            (copied once into the message) and any byte order (kept, and flagged by
            ``is_bigendian``).
        encoding: one of :data:`ENCODINGS`.
        header: copied into the message (stamp and frame_id); default an empty header.

    Raises:
        ImageFormatError: unknown encoding, or an array whose dtype or shape does not fit it.
    """
    if encoding not in ENCODINGS:
        raise ImageFormatError(
            "encoding", f"unsupported encoding '{encoding}' (accepted: {', '.join(ENCODINGS)})"
        )
    kind, channels = ENCODINGS[encoding]
    pixels = np.asarray(array_)
    if pixels.ndim == 3 and channels == 1 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    expected_ndim = 2 if channels == 1 else 3
    if (
        pixels.dtype.kind + str(pixels.dtype.itemsize) != kind
        or pixels.ndim != expected_ndim
        or (channels > 1 and pixels.shape[2] != channels)
    ):
        raise ImageFormatError(
            "array",
            f"a {pixels.dtype} array of shape {pixels.shape} cannot be encoded as {encoding} "
            f"({channels} channel(s) of {np.dtype(kind)})",
        )
    order = pixels.dtype.byteorder
    bigendian = order == ">" or (order == "=" and sys.byteorder == "big")
    h, w = pixels.shape[:2]
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = int(bigendian)
    msg.step = w * channels * pixels.dtype.itemsize
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(pixels).reshape(-1).view(np.uint8))
    msg.data = data
    return msg
