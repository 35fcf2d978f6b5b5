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

:func:`compressed_to_rgb8` reads a ``sensor_msgs/CompressedImage`` (``format``, ``data``: JPEG or
PNG, as image_transport's ``compressed`` plugin writes it) with OpenCV, checking the size in the
header before decoding. Strings from messages are untrusted: every error message quotes them
through :func:`safe_text` (escaped, cut short), so a log line cannot be forged with them.
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
#: Longest quoted untrusted string (longer ones are cut, with their length noted).
SAFE_TEXT_LIMIT = 48


def safe_text(value: Any, limit: int = SAFE_TEXT_LIMIT) -> str:
    """An untrusted string (from a message) made safe to log: quoted as Python ``repr`` does
    (newlines, ANSI escapes and every other control or non-ASCII character escaped) and cut to
    ``limit`` characters, ``...`` and the full length noted after a cut: ``bad\\n[FATAL]``
    logs as ``'bad\\n[FATAL]'``, on one line.
    """
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    quoted = ascii(text[:limit])
    return f"{quoted[:-1]}...{quoted[-1]} ({len(text)} characters)" if cut else quoted


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
            "encoding",
            f"unsupported encoding {safe_text(encoding)} (accepted: {', '.join(ENCODINGS)})",
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
    if msg.encoding not in INPUT_ENCODINGS:
        quoted = safe_text(msg.encoding)
        what = (
            f"encoding {quoted} is not a camera image"
            if msg.encoding in ENCODINGS
            else f"unsupported encoding {quoted}"
        )
        raise ImageFormatError("encoding", f"{what} (accepted: {', '.join(INPUT_ENCODINGS)})")
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


# --- sensor_msgs/CompressedImage ------------------------------------------------------------

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): not DHT/JPG/DAC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_size(data: bytes | memoryview) -> tuple[str, int, int]:
    """``(codec, height, width)`` of a JPEG or PNG from its header alone (no decoding).

    Raises:
        ImageFormatError: ``compressed``: neither PNG nor JPEG, or a truncated header.
    """
    data = memoryview(data).cast("B")
    head = bytes(data[:8])
    if head == _PNG_MAGIC:
        if len(data) < 24 or bytes(data[12:16]) != b"IHDR":
            raise ImageFormatError("compressed", "PNG data without an IHDR header")
        width = int.from_bytes(data[16:20], "big")
        height = int.from_bytes(data[20:24], "big")
        return "png", height, width
    if head[:2] == b"\xff\xd8":
        i, n = 2, len(data)
        while i + 4 <= n:
            if data[i] != 0xFF:
                break
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in _JPEG_SOF and i + 9 <= n:
                height = int.from_bytes(data[i + 5 : i + 7], "big")
                width = int.from_bytes(data[i + 7 : i + 9], "big")
                return "jpeg", height, width
            i += 2 + length
        raise ImageFormatError("compressed", "JPEG data without a frame header")
    raise ImageFormatError(
        "compressed", f"data is neither JPEG nor PNG (starts with {head[:4].hex() or 'nothing'})"
    )


def compressed_to_rgb8(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage``-like message (``format``, ``data``) as uint8 RGB.

    The codec is read from the data (``format``, e.g. ``rgb8; jpeg compressed bgr8``, is only
    checked not to name ``compressedDepth``); colour payloads are BGR as OpenCV and
    image_transport write them, grey ones are replicated to three channels, 16-bit PNG scaled
    by 255 / 65535 as :func:`image_to_rgb8` does for mono16, alpha dropped.

    Raises:
        ImageFormatError: ``compressed`` (not JPEG/PNG, truncated, undecodable, a depth
            format), ``empty`` or ``oversize`` (checked from the header, before decoding).
    """
    import cv2  # only for compressed input: the raw path needs no OpenCV

    if "compresseddepth" in str(msg.format).lower():
        raise ImageFormatError(
            "compressed", f"format {safe_text(msg.format)} is a depth image, not a camera image"
        )
    data = memoryview(msg.data).cast("B")
    codec, h, w = compressed_size(data)
    if h == 0 or w == 0:
        raise ImageFormatError("empty", f"zero-size {codec} image {w}x{h}")
    if max_pixels is not None and h * w > max_pixels:
        raise ImageFormatError(
            "oversize", f"image {w}x{h} has {h * w} pixels, more than max_pixels {max_pixels}"
        )
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.shape[:2] != (h, w):
        raise ImageFormatError("compressed", f"{codec} data of {len(data)} bytes does not decode")
    if decoded.dtype == np.uint16:
        decoded = np.rint(decoded * _MONO16_TO_8).astype(np.uint8)
    if decoded.dtype != np.uint8:
        raise ImageFormatError("compressed", f"{codec} image of {decoded.dtype} samples")
    if decoded.ndim == 2:
        return np.broadcast_to(decoded[..., None], (h, w, 3))
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
