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

import zlib
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


def safe_name(value: Any, limit: int = 120) -> str:
    """A name from an untrusted source (a bag's topic, type or sequence name) as it is when it
    is printable ASCII without spaces and at most ``limit`` characters (``/camera/image``
    stays ``/camera/image``), else quoted and escaped by :func:`safe_text`.
    """
    text = value if isinstance(value, str) else str(value)
    if text and len(text) <= limit and all("!" <= c <= "~" for c in text):
        return text
    return safe_text(text, limit)


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


# --- JPEG / PNG data: structure checked in full before OpenCV decodes it -------------------
#
# OpenCV decodes what libjpeg and libpng give it: a truncated JPEG becomes a half-grey frame
# with one "Premature end of JPEG file" line on stderr, a corrupt PNG one "libpng error: ..."
# line on stderr (neither can be rate-limited nor silenced per call, and redirecting fd 2 is
# not thread-safe). So the data's structure is checked here first, in Python and NumPy, and
# OpenCV only sees data that libjpeg / libpng read without a complaint: the markers of a JPEG
# up to its end-of-image marker, the chunks of a PNG with their CRCs and the inflated image
# data (its length and every row's filter byte). libpng then gets only the PNG's critical
# chunks, its image data already inflated (stored deflate blocks, copied rather than inflated a
# second time): on a 1280x1024 frame the checked decode costs 1.2-1.4x OpenCV's alone for PNG
# and 1.05-1.1x for JPEG (benchmarks/bench_decode.py, 2 shared cores, load average 6-8).

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers SOF0-SOF15 (baseline, progressive, lossless, hierarchical...):
# C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SOS, _JPEG_EOI, _JPEG_SOI, _JPEG_DHP = 0xDA, 0xD9, 0xD8, 0xDE
# Markers without a length (standalone): TEM and RST0-RST7 (SOI and EOI are handled apart).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# PNG colour type -> (channels, allowed bit depths).
_PNG_COLOUR = {0: (1, (1, 2, 4, 8, 16)), 2: (3, (8, 16)), 3: (1, (1, 2, 4, 8)),
               4: (2, (8, 16)), 6: (4, (8, 16))}  # fmt: skip
_PNG_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")
_IDAT_MAX = 1 << 30  # bytes per IDAT chunk written (PNG allows up to 2**31 - 1)
# Adam7 passes: (x0, y0, dx, dy).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # fmt: skip


def _bad(message: str) -> ImageFormatError:
    return ImageFormatError("compressed", message)


def _jpeg_walk(data: memoryview, full: bool) -> tuple[int, int]:
    """(height, width) of a JPEG from its frame header, walking its markers.

    Standalone markers (TEM, RSTn) carry no length and fill bytes (``FF FF``) may precede any
    marker. ``full=False`` stops at the first scan (start of scan, SOS); ``full=True`` also
    skips every scan's entropy-coded data and requires the end-of-image marker (EOI). Either
    way the frame header must be found before the first scan and be the only one.

    Raises:
        ImageFormatError: ``compressed``: a corrupt or truncated marker sequence, no frame
            header, more than one, or (``full``) no end-of-image marker.
    """
    n = len(data)
    sizes: list[tuple[int, int]] = []
    candidates: np.ndarray | None = None
    i, scans = 2, 0
    while True:
        if i >= n:
            if not sizes:
                raise _bad(f"JPEG data without a frame header (it ends at byte {n})")
            raise _bad(f"JPEG data of {n} bytes is truncated (no end-of-image marker)")
        if data[i] != 0xFF:
            what = "frame header" if not sizes else "end-of-image marker"
            raise _bad(
                f"JPEG data without a {what}: byte {i} is {data[i]:#04x} where a marker "
                "should start (corrupt data)"
            )
        while i < n and data[i] == 0xFF:  # a marker, after any number of fill bytes
            i += 1
        if i >= n:
            continue  # reported above
        marker, i = data[i], i + 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0x00 or marker == _JPEG_SOI:
            raise _bad(f"JPEG data has an invalid marker FF {marker:02X} at byte {i - 2}")
        if marker == _JPEG_EOI:
            if not scans:
                raise _bad("JPEG data ends (end-of-image marker) before any scan")
            break
        if i + 2 > n:
            i = n  # truncated: reported at the top
            continue
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            raise _bad(f"JPEG segment FF {marker:02X} at byte {i - 2} has length {length}")
        if marker in _JPEG_SOF or marker == _JPEG_DHP:
            if length < 8 or i + 7 > n:
                raise _bad(f"JPEG frame header at byte {i - 2} is truncated")
            if scans and marker != _JPEG_DHP:
                raise _bad("JPEG data has a frame header after its first scan")
            height = int.from_bytes(data[i + 3 : i + 5], "big")
            sizes.append((height, int.from_bytes(data[i + 5 : i + 7], "big")))
        if marker == _JPEG_SOS:
            if not sizes:
                raise _bad("JPEG data without a frame header before its first scan")
            scans += 1
            if not full:
                break
            i += length
            if candidates is None:  # where a marker may follow entropy-coded data: FF xx,
                arr = np.frombuffer(data, np.uint8)  # xx not 00 (stuffing), RSTn or FF (fill)
                ff = np.flatnonzero(arr[:-1] == 0xFF)
                nxt = arr[ff + 1]
                candidates = ff[(nxt != 0) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7))]
            k = int(np.searchsorted(candidates, i))
            i = int(candidates[k]) if k < len(candidates) else n
            continue
        i += length
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for h, w in sizes)
        raise _bad(f"JPEG data has {len(sizes)} frame headers ({listed}); one is expected")
    return sizes[0]


def _png_ihdr(data: memoryview) -> tuple[int, int]:
    if len(data) < 33 or bytes(data[8:16]) != b"\x00\x00\x00\x0dIHDR":
        raise _bad("PNG data without an IHDR header")
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


def compressed_size(data: bytes | memoryview) -> tuple[str, int, int]:
    """``(codec, height, width)`` of a JPEG or PNG from its header alone (no decoding).

    A JPEG's markers are walked up to its first scan (standalone markers and fill bytes
    included), and its one frame header gives the size: data with no frame header before the
    first scan, or with several, is refused, so the size holds for whatever a decoder reads.

    Raises:
        ImageFormatError: ``compressed``: neither PNG nor JPEG, or a corrupt or truncated header.
    """
    data = memoryview(data).cast("B")
    head = bytes(data[:8])
    if head == _PNG_MAGIC:
        return ("png", *_png_ihdr(data))
    if head[:2] == b"\xff\xd8":
        return ("jpeg", *_jpeg_walk(data, full=False))
    raise _bad(f"data is neither JPEG nor PNG (starts with {head[:4].hex() or 'nothing'})")


def _check_png(data: memoryview) -> bytes:
    """The PNG's signature and critical chunks (IHDR, PLTE, IDAT, IEND), after checking every
    chunk's CRC, the header's fields and the inflated image data's length and filter bytes.

    Raises:
        ImageFormatError: ``compressed``: corrupt or truncated PNG data.
    """
    n = len(data)
    height, width = _png_ihdr(data)
    depth, colour, method, filtering, interlace = bytes(data[24:29])
    if colour not in _PNG_COLOUR or depth not in _PNG_COLOUR[colour][1]:
        raise _bad(f"PNG header has colour type {colour} with bit depth {depth}")
    if method or filtering or interlace > 1:
        raise _bad("PNG header names an unknown compression, filter or interlace method")
    kept: list[memoryview] = [data[:8]]
    idat: list[memoryview] = []
    seen: list[bytes] = []
    i = 8
    while True:
        if i + 12 > n:
            raise _bad(f"PNG data of {n} bytes is truncated (no IEND chunk)")
        length = int.from_bytes(data[i : i + 4], "big")
        kind = bytes(data[i + 4 : i + 8])
        end = i + 12 + length
        if length > 0x7FFFFFFF or not kind.isalpha() or not kind.isascii():
            raise _bad(f"PNG data has a corrupt chunk header at byte {i}")
        if end > n:
            raise _bad(f"PNG data of {n} bytes is truncated (in its {kind.decode()} chunk)")
        crc = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(data[i + 4 : end - 4]) != crc:
            raise _bad(f"PNG chunk {kind.decode()} at byte {i} is corrupt (CRC mismatch)")
        if kind[:1].isupper():  # critical
            if kind not in _PNG_CRITICAL:
                raise _bad(f"PNG data has an unknown critical chunk {kind.decode()}")
            if kind == b"IHDR" and seen:
                raise _bad("PNG data has a second IHDR chunk")
            if kind == b"IDAT":
                if idat and seen[-1] != b"IDAT":
                    raise _bad("PNG data has IDAT chunks that are not consecutive")
                idat.append(data[i + 8 : end - 4])
            if kind == b"PLTE" and (idat or length % 3 or not 3 <= length <= 768):
                raise _bad(f"PNG data has a bad PLTE chunk ({length} bytes)")
            kept.append(data[i:end])
        seen.append(kind)
        i = end
        if kind == b"IEND":
            break
    if colour == 3 and b"PLTE" not in seen:
        raise _bad("PNG data of a palette image has no PLTE chunk")
    if not idat:
        raise _bad("PNG data has no image data (IDAT chunk)")
    channels = _PNG_COLOUR[colour][0]
    bits = channels * depth
    if interlace:
        passes = [(-(-(height - y0) // dy), -(-(width - x0) // dx)) for x0, y0, dx, dy in _ADAM7]
        rows = [(h, (w * bits + 7) // 8) for h, w in passes if h > 0 and w > 0]
    else:
        rows = [(height, (width * bits + 7) // 8)]
    expected = sum(h * (1 + row) for h, row in rows)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(idat), expected + 1)
    except zlib.error as exc:
        raise _bad(f"PNG image data is corrupt ({exc})") from exc
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        what = "too short" if len(raw) < expected or not inflater.eof else "too long"
        raise _bad(f"PNG image data is {what} for a {width}x{height} image")
    filters = np.frombuffer(raw, np.uint8)
    start = 0
    for h, row in rows:
        if h and int(filters[start : start + h * (1 + row) : 1 + row].max()) > 4:
            raise _bad("PNG image data has an invalid row filter (corrupt data)")
        start += h * (1 + row)
    # The image data goes to libpng already inflated, as stored (uncompressed) deflate blocks:
    # libpng copies them instead of inflating a second time.
    stored = memoryview(zlib.compress(raw, 0))
    chunks = [c for c in kept if bytes(c[4:8]) not in (b"IDAT", b"IEND")]
    for at in range(0, len(stored), _IDAT_MAX):
        part = stored[at : at + _IDAT_MAX]
        crc = zlib.crc32(part, zlib.crc32(b"IDAT"))
        chunks += [len(part).to_bytes(4, "big"), b"IDAT", part, crc.to_bytes(4, "big")]
    return b"".join([*chunks, kept[-1]])


def decode_compressed(data: bytes | memoryview, max_pixels: int | None = None) -> np.ndarray:
    """JPEG or PNG data decoded as OpenCV's ``IMREAD_UNCHANGED`` does (BGR, BGRA or grey,
    8 or 16 bit), after its size and structure are checked: nothing is printed on stderr.

    Args:
        data: the encoded bytes.
        max_pixels: largest accepted width x height, checked from the header before anything
            else is read (``None``: no limit).

    Raises:
        ImageFormatError: ``compressed`` (not JPEG/PNG, corrupt, truncated, undecodable),
            ``empty`` or ``oversize``.
    """
    import cv2  # only for compressed input: the raw path needs no OpenCV

    data = memoryview(data).cast("B")
    codec, h, w = compressed_size(data)
    if h == 0 or w == 0:
        raise ImageFormatError("empty", f"zero-size {codec} image {w}x{h}")
    if max_pixels is not None and h * w > max_pixels:
        raise ImageFormatError(
            "oversize", f"image {w}x{h} has {h * w} pixels, more than max_pixels {max_pixels}"
        )
    if codec == "png":
        data = memoryview(_check_png(data))
    else:
        _jpeg_walk(data, full=True)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.shape[:2] != (h, w):
        raise _bad(f"{codec} data of {len(data)} bytes does not decode")
    return decoded


def compressed_to_rgb8(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage``-like message (``format``, ``data``) as uint8 RGB.

    The codec is read from the data (``format``, e.g. ``rgb8; jpeg compressed bgr8``, is only
    checked not to name ``compressedDepth``); colour payloads are BGR as OpenCV and
    image_transport write them, grey ones are replicated to three channels, 16-bit PNG scaled
    by 255 / 65535 as :func:`image_to_rgb8` does for mono16, alpha dropped. The data is checked
    by :func:`decode_compressed` first, so a corrupt or truncated image prints nothing.

    Raises:
        ImageFormatError: ``compressed`` (not JPEG/PNG, corrupt, truncated, undecodable, a
            depth format), ``empty`` or ``oversize`` (checked from the header, before
            decoding).
    """
    import cv2

    if "compresseddepth" in str(msg.format).lower():
        raise _bad(f"format {safe_text(msg.format)} is a depth image, not a camera image")
    decoded = decode_compressed(msg.data, max_pixels)
    h, w = decoded.shape[:2]
    if decoded.dtype == np.uint16:
        decoded = np.rint(decoded * _MONO16_TO_8).astype(np.uint8)
    if decoded.dtype != np.uint8:
        raise _bad(f"image of {decoded.dtype} samples")
    if decoded.ndim == 2:
        return np.broadcast_to(decoded[..., None], (h, w, 3))
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
