"""instrument_seg.imagemsg without ROS: untrusted strings, encodings named, compressed frames."""

from __future__ import annotations

import struct
import subprocess
import sys
import types
import zlib

import cv2
import numpy as np
import pytest

from instrument_seg.imagemsg import (
    INPUT_ENCODINGS,
    ImageFormatError,
    compressed_size,
    compressed_to_rgb8,
    decode_compressed,
    image_to_rgb8,
    safe_text,
)


def compressed(pixels: np.ndarray, ext: str, fmt: str = "") -> types.SimpleNamespace:
    ok, buf = cv2.imencode(ext, pixels)
    assert ok
    return types.SimpleNamespace(format=fmt or f"bgr8; {ext[1:]} compressed bgr8", data=buf)


def frame(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=2).astype(np.uint8)


class TestSafeText:
    def test_forged_log_line_stays_on_one_line(self):
        text = safe_text("bad\n[FATAL] [123] [segmentation_node]: compromised")
        assert "\n" not in text and text.startswith("'bad\\n[FATAL]")

    def test_ansi_and_non_ascii_escaped(self):
        text = safe_text("\x1b[31mred\x1b[0m\u202e")
        assert "\x1b" not in text and "\u202e" not in text
        assert "\\x1b[31m" in text

    def test_cut_with_length(self):
        text = safe_text("a" * 100_000)
        assert len(text) < 80 and text.endswith("(100000 characters)")

    def test_short_strings_quoted_as_is(self):
        assert safe_text("rgb8") == "'rgb8'"


class TestEncodingErrors:
    @pytest.mark.parametrize("encoding", ["yuv422", "32FC1", "8UC1", "bad\n[FATAL] x"])
    def test_lists_only_what_is_accepted(self, encoding):
        msg = types.SimpleNamespace(
            encoding=encoding, height=2, width=2, step=8, is_bigendian=0, data=bytes(16)
        )
        with pytest.raises(ImageFormatError) as info:
            image_to_rgb8(msg)
        text = str(info.value)
        assert info.value.kind == "encoding" and "\n" not in text
        assert f"(accepted: {', '.join(INPUT_ENCODINGS)})" in text
        for map_encoding in ("8UC1", "16UC1", "32FC1"):
            assert map_encoding not in text.split("accepted")[1]


class TestCompressed:
    def test_png_is_exact_rgb(self):
        rgb = frame()
        out = compressed_to_rgb8(compressed(rgb[..., ::-1], ".png"))
        np.testing.assert_array_equal(out, rgb)

    def test_jpeg_decodes_close_to_the_frame(self):
        rgb = frame()
        out = compressed_to_rgb8(compressed(rgb[..., ::-1], ".jpg"))
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - rgb).mean() < 6

    def test_grey_and_16_bit_png(self):
        grey = frame()[..., 0]
        out = compressed_to_rgb8(compressed(grey, ".png", "mono8; png compressed mono8"))
        np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
        wide = grey.astype(np.uint16) * 257
        out16 = compressed_to_rgb8(compressed(wide, ".png", "mono16; png compressed mono16"))
        np.testing.assert_array_equal(out16[..., 0], grey)

    def test_bgra_png_drops_alpha(self):
        rgb = frame()
        bgra = np.concatenate([rgb[..., ::-1], np.full((*rgb.shape[:2], 1), 9, np.uint8)], 2)
        np.testing.assert_array_equal(compressed_to_rgb8(compressed(bgra, ".png")), rgb)

    def test_size_from_the_header(self):
        assert compressed_size(compressed(frame(30, 70), ".png").data) == ("png", 30, 70)
        assert compressed_size(compressed(frame(30, 70), ".jpg").data) == ("jpeg", 30, 70)

    def test_oversize_rejected_before_decoding(self):
        msg = compressed(frame(100, 100), ".png")
        with pytest.raises(ImageFormatError) as info:
            compressed_to_rgb8(msg, max_pixels=100 * 99)
        assert info.value.kind == "oversize" and "100x100" in str(info.value)

    @pytest.mark.parametrize(
        ("data", "words"),
        [
            (b"GIF89a....", "neither JPEG nor PNG"),
            (b"", "neither JPEG nor PNG"),
            (b"\x89PNG\r\n\x1a\n\x00\x00", "without an IHDR"),
            (b"\xff\xd8\xff\xe0\x00\x10JFIF", "without a frame header"),
        ],
    )
    def test_garbage(self, data, words):
        msg = types.SimpleNamespace(format="jpeg", data=np.frombuffer(data, np.uint8))
        with pytest.raises(ImageFormatError, match=words) as info:
            compressed_to_rgb8(msg)
        assert info.value.kind == "compressed"

    @pytest.mark.parametrize("ext", [".png", ".jpg"])
    def test_truncated_data_refused(self, ext):
        msg = compressed(frame(), ext)
        msg.data = msg.data[: len(msg.data) * 2 // 3]
        with pytest.raises(ImageFormatError, match="truncated") as info:
            compressed_to_rgb8(msg)
        assert info.value.kind == "compressed"

    def test_depth_format_refused_and_escaped(self):
        msg = compressed(frame(), ".png", "16UC1; compressedDepth png\n[FATAL]")
        with pytest.raises(ImageFormatError) as info:
            compressed_to_rgb8(msg)
        assert "depth image" in str(info.value) and "\n" not in str(info.value)


# --- hostile JPEG / PNG data -----------------------------------------------------------------


def jpeg_segments(data: bytes) -> dict[int, bytes]:
    """Marker -> whole segment (marker and length included) of a simple JPEG's header."""
    out, i = {}, 2
    while data[i + 1] != 0xDA:
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        out.setdefault(data[i + 1], data[i : i + 2 + length])
        i += 2 + length
    return out


def with_size(sof: bytes, h: int, w: int) -> bytes:
    return sof[:5] + h.to_bytes(2, "big") + w.to_bytes(2, "big") + sof[9:]


def standalone_forgery(marker: bytes, h: int = 16000, w: int = 16000) -> bytes:
    """A JPEG whose real frame header (h x w) follows a standalone marker (TEM / RSTn), and
    whose comment hides an 8x8 frame header exactly where a reader that takes the standalone
    marker's next two bytes (FF C0) for a segment length lands (byte 2 + 2 + 0xFFC0)."""
    jpg = cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8))[1].tobytes()
    sof = jpeg_segments(jpg)[0xC0]
    real = with_size(sof, h, w)
    start = 2 + len(marker) + len(real) + 4  # comment payload
    landing = 2 + 2 + int.from_bytes(real[:2], "big")
    payload = bytearray(65000)
    payload[landing - start : landing - start + len(sof)] = sof  # the 8x8 decoy
    comment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + bytes(payload)
    rest = jpg[jpg.index(sof) + len(sof) :]
    return jpg[:2] + marker + real + comment + jpg[2 : jpg.index(sof)] + rest


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def make_png(rgb: np.ndarray, interlace: int = 0, raw: bytes | None = None) -> bytes:
    """An 8-bit RGB PNG written here (Adam7 when ``interlace``), or with ``raw`` as its
    inflated image data."""
    h, w = rgb.shape[:2]
    if raw is None:
        if interlace:
            passes = [rgb[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7]
        else:
            passes = [rgb]
        raw = b"".join(b"\x00" + row.tobytes() for p in passes if p.size for row in p)
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"tEXt", b"Comment\x00made here")
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))  # fmt: skip


class TestJpegMarkers:
    @pytest.mark.parametrize("marker", [b"\xff\x01", b"\xff\xd3", b"\xff\xff\xff\x01"])
    def test_standalone_marker_before_the_frame_header(self, marker):
        data = standalone_forgery(marker)
        assert compressed_size(data) == ("jpeg", 16000, 16000)
        with pytest.raises(ImageFormatError) as info:
            decode_compressed(data, max_pixels=4096 * 4096)
        assert info.value.kind == "oversize" and "16000x16000" in str(info.value)

    def test_standalone_marker_in_a_small_jpeg_decodes(self):
        rgb = frame()
        jpg = cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()
        data = jpg[:2] + b"\xff\x01\xff\xff" + jpg[2:]
        assert compressed_size(data) == ("jpeg", 48, 64)
        assert decode_compressed(data).shape == (48, 64, 3)

    def test_two_frame_headers_refused(self):
        jpg = cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8))[1].tobytes()
        sof = jpeg_segments(jpg)[0xC0]
        data = jpg[:2] + with_size(sof, 8, 8) + jpg[2:]
        with pytest.raises(ImageFormatError, match="2 frame headers"):
            compressed_size(data)

    def test_every_sof_counts_but_not_dht_jpg_dac(self):
        from instrument_seg.imagemsg import _JPEG_SOF

        assert _JPEG_SOF == set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

    def test_progressive_jpeg_decodes(self):
        rgb = frame()
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
        assert decode_compressed(buf.tobytes()).shape == (48, 64, 3)

    def test_end_of_image_required(self):
        jpg = cv2.imencode(".jpg", frame()[..., ::-1])[1].tobytes()
        assert jpg.endswith(b"\xff\xd9")
        with pytest.raises(ImageFormatError, match="truncated"):
            decode_compressed(jpg[:-2])
        decode_compressed(jpg + b"\x00" * 7)  # bytes after the end are ignored, as libjpeg does


class TestPngStructure:
    @pytest.mark.parametrize("interlace", [0, 1])
    @pytest.mark.parametrize("shape", [(1, 1), (5, 3), (17, 33)])
    def test_written_here_decodes_exactly(self, shape, interlace):
        rgb = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
        np.testing.assert_array_equal(decode_compressed(make_png(rgb, interlace))[..., ::-1], rgb)

    @pytest.mark.parametrize("transparency", [False, True])
    def test_palette_png_with_and_without_trns(self, transparency, tmp_path):
        """Palette images keep their colours (tRNS, ancillary, is not passed to OpenCV: alpha
        is dropped anyway)."""
        image = pytest.importorskip("PIL.Image")
        rgb = np.random.default_rng(2).integers(0, 4, (9, 13, 3), dtype=np.uint8) * 60
        pal = image.fromarray(rgb).quantize(colors=16)
        path = tmp_path / "p.png"
        pal.save(path, transparency=0) if transparency else pal.save(path)
        data = path.read_bytes()
        assert (b"tRNS" in data) == transparency and b"PLTE" in data
        out = compressed_to_rgb8(types.SimpleNamespace(format="png", data=data))
        np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))

    @pytest.mark.parametrize(
        ("damage", "words"),
        [
            (lambda d: d.replace(b"IDAT", b"IDAT\x00", 1)[:-1], "CRC"),
            (lambda d: d[: len(d) - 12], "truncated"),
            (lambda d: d.replace(b"IDAT", b"IDAX"), "CRC"),
        ],
        ids=["shifted", "cut", "renamed"],
    )
    def test_corrupt_png_refused(self, damage, words):
        data = cv2.imencode(".png", frame())[1].tobytes()
        with pytest.raises(ImageFormatError, match=words) as info:
            decode_compressed(damage(data))
        assert info.value.kind == "compressed"

    @pytest.mark.parametrize(
        ("raw", "words"),
        [
            (b"\x00" * (4 * (1 + 12)), "too short"),
            (b"\x00" * (5 * (1 + 12) + 1), "too long"),
            (b"\x07" + b"\x00" * (5 * (1 + 12) - 1), "filter"),
        ],
        ids=["short", "long", "filter"],
    )
    def test_valid_crc_but_bad_image_data_refused(self, raw, words):
        data = make_png(np.zeros((5, 4, 3), np.uint8), raw=raw)
        with pytest.raises(ImageFormatError, match=words):
            decode_compressed(data)

    def test_corrupt_png_prints_nothing(self):
        """libpng's own "libpng error: ..." line never reaches stderr (it bypasses every rate
        limit): the structure is refused before OpenCV sees it."""
        data = bytearray(cv2.imencode(".png", frame())[1].tobytes())
        data[60] ^= 0xFF  # inside the deflate stream: CRC mismatch and an inflate error
        probe = (
            "import sys, types\n"
            "from instrument_seg.imagemsg import ImageFormatError, compressed_to_rgb8\n"
            "msg = types.SimpleNamespace(format='png', data=sys.stdin.buffer.read())\n"
            "for _ in range(3):\n"
            "    try:\n"
            "        compressed_to_rgb8(msg)\n"
            "    except ImageFormatError:\n"
            "        pass\n"
            "    else:\n"
            "        raise SystemExit('decoded')\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", probe], input=bytes(data), capture_output=True, timeout=60
        )
        assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
