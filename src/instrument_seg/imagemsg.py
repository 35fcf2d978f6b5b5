"""``sensor_msgs/Image`` -> NumPy without cv_bridge or ROS, zero-copy wherever possible.

A message here is anything with the fields of ``sensor_msgs/Image`` (``height``, ``width``,
``encoding``, ``is_bigendian``, ``step``, ``data``): an rclpy message in the node, a ``rosbags``
message when reading a bag. :mod:`instrument_seg.ros.conversions` adds the way back
(``array_to_image``), which needs the ROS message class.

Semantics follow cv_bridge's ``imgmsg_to_cv2`` / ``cv2_to_imgmsg`` (cv_bridge itself cannot be
installed here, and its PyPI namesake is a stale ROS 1 copy broken on NumPy 2):

- :func:`image_to_array` is ``imgmsg_to_cv2(msg, "passthrough")``: an (H, W) or (H, W, C) array
  in the message's own channel order. It is a *view* of ``msg.data`` (no copy): row padding
  (``step`` > width x pixel size) becomes a row stride, and ``is_bigendian`` becomes the dtype's
  byte order, so values read correctly on any host without swapping bytes in memory.
- :func:`image_to_rgb8` is ``imgmsg_to_cv2(msg, "rgb8")``: channels reordered (a view for the
  8-bit colour encodings), alpha dropped, grey replicated to three channels, and 16 bit scaled
  to 8 bit by 255 / 65535 with rounding, as cv_bridge's depth conversion does.

Malformed messages raise :class:`ImageFormatError`, whose ``kind`` is a short tag (``encoding``,
``empty``, ``oversize``, ``step``, ``length``) that callers count and rate-limit by.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from instrument_seg.errors import InputError

# encoding -> (NumPy dtype kind + size, channels); byte order comes from ``is_bigendian``.
ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "mono8": ("u1", 1),
    "mono16": ("u2", 1),
    "8UC1": ("u1", 1),
    "16UC1": ("u2", 1),
    "32FC1": ("f4", 1),
}
# Encodings of camera images (the rest are single-channel maps: masks, depth, confidence).
INPUT_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")

_MONO16_TO_8 = np.float32(255.0 / 65535.0)


class ImageFormatError(InputError):
    """An image message that cannot be read as an image.

    Attributes:
        kind: short tag of the problem: ``encoding``, ``empty``, ``oversize``, ``step`` or
            ``length`` (an array that does not fit an encoding in ``array_to_image`` is
            ``array``).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _dtype(encoding: str, bigendian: bool) -> np.dtype:
    kind, _ = ENCODINGS[encoding]
    return np.dtype(kind).newbyteorder(">" if bigendian else "<")


def check_image(msg: Any, max_pixels: int | None = None) -> None:
    """Raises :class:`ImageFormatError` unless ``msg`` is a readable image.

    Args:
        msg: the message.
        max_pixels: largest accepted width x height (``None``: no limit).
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise ImageFormatError(
            "encoding", f"unsupported encoding '{encoding}' (accepted: {', '.join(ENCODINGS)})"
        )
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ImageFormatError("empty", f"zero-size image {w}x{h}")
    if max_pixels is not None and h * w > max_pixels:
        raise ImageFormatError(
            "oversize", f"image {w}x{h} has {h * w} pixels, more than max_pixels {max_pixels}"
        )
    kind, channels = ENCODINGS[encoding]
    row = w * channels * np.dtype(kind).itemsize
    if step < row:
        raise ImageFormatError(
            "step", f"step {step} is smaller than width x pixel size ({w} x {row // w} = {row})"
        )
    n = len(msg.data)
    if n != step * h:
        raise ImageFormatError(
            "length", f"data has {n} bytes but step x height is {step} x {h} = {step * h}"
        )


def image_to_array(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """The message's pixels as a zero-copy view, in its own encoding (cv_bridge passthrough).

    Args:
        msg: a ``sensor_msgs/Image``-like message in one of :data:`ENCODINGS`.
        max_pixels: largest accepted width x height (``None``: no limit).

    Returns:
        (H, W) for one channel, else (H, W, C); dtype from the encoding, byte order from
        ``is_bigendian``; strides honour ``step``. Shares memory with ``msg.data``.

    Raises:
        ImageFormatError: unsupported encoding, zero or too many pixels, ``step`` too small, or
            ``data`` length not ``step * height``.
    """
    check_image(msg, max_pixels)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    _, channels = ENCODINGS[msg.encoding]
    dtype = _dtype(msg.encoding, bool(msg.is_bigendian))
    rows = np.frombuffer(msg.data, np.uint8).reshape(h, step)[:, : w * channels * dtype.itemsize]
    pixels = rows.view(dtype)  # (h, w * channels), row stride = step
    return pixels.reshape(h, w, channels) if channels > 1 else pixels


def image_to_rgb8(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """The message as uint8 (H, W, 3) RGB, as ``imgmsg_to_cv2(msg, "rgb8")`` gives it.

    8-bit colour encodings give a view of ``msg.data`` (channel order by strides); mono8 a
    read-only broadcast view; mono16 one new 8-bit plane (x 255 / 65535, rounded).

    Raises:
        ImageFormatError: as :func:`image_to_array`, and for the single-channel map encodings
            (``8UC1``, ``16UC1``, ``32FC1``: not camera images).
    """
    if msg.encoding not in INPUT_ENCODINGS and msg.encoding in ENCODINGS:
        raise ImageFormatError(
            "encoding",
            f"encoding '{msg.encoding}' is not a camera image "
            f"(accepted: {', '.join(INPUT_ENCODINGS)})",
        )
    pixels = image_to_array(msg, max_pixels)
    encoding = msg.encoding
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return pixels[..., ::-1]
    if encoding == "rgba8":
        return pixels[..., :3]
    if encoding == "bgra8":
        return pixels[..., 2::-1]
    if encoding == "mono16":
        pixels = np.rint(pixels * _MONO16_TO_8).astype(np.uint8)
    return np.broadcast_to(pixels[..., None], (*pixels.shape, 3))
