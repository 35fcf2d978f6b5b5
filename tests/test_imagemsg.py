"""instrument_seg.imagemsg without ROS: untrusted strings, encodings named, compressed frames."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest

from instrument_seg.imagemsg import (
    INPUT_ENCODINGS,
    ImageFormatError,
    compressed_size,
    compressed_to_rgb8,
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

    def test_truncated_data_does_not_decode(self):
        msg = compressed(frame(), ".png")
        msg.data = msg.data[: len(msg.data) // 2]
        with pytest.raises(ImageFormatError, match="does not decode"):
            compressed_to_rgb8(msg)

    def test_depth_format_refused_and_escaped(self):
        msg = compressed(frame(), ".png", "16UC1; compressedDepth png\n[FATAL]")
        with pytest.raises(ImageFormatError) as info:
            compressed_to_rgb8(msg)
        assert "depth image" in str(info.value) and "\n" not in str(info.value)
