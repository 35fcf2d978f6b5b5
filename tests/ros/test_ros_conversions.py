"""sensor_msgs/Image <-> NumPy: round trips for every encoding, padding, byte order, rejections."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from ros_harness import hand_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from instrument_seg.ros.conversions import (  # noqa: E402
    ENCODINGS,
    INPUT_ENCODINGS,
    ImageFormatError,
    array_to_image,
    check_image,
    image_to_array,
    image_to_rgb8,
)

H, W = 5, 7
HEADER = Header(frame_id="cam")
HEADER.stamp.sec, HEADER.stamp.nanosec = 42, 123456789


def sample(encoding: str, bigendian: bool = False, seed: int = 0) -> np.ndarray:
    """Random pixels in ``encoding``'s dtype and shape (32FC1: floats in [0, 1))."""
    kind, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (H, W) if channels == 1 else (H, W, channels)
    dtype = np.dtype(kind).newbyteorder(">" if bigendian else "<")
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def message(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    return hand_message(pixels, encoding, HEADER, pad=pad, bigendian=bigendian)


def data_view(msg: Image) -> np.ndarray:
    return np.frombuffer(msg.data, np.uint8)


class TestRoundTrip:
    @pytest.mark.parametrize("encoding", list(ENCODINGS))
    @pytest.mark.parametrize("bigendian", [False, True])
    def test_array_message_array(self, encoding, bigendian):
        pixels = sample(encoding, bigendian)
        msg = array_to_image(pixels, encoding, HEADER)
        kind, channels = ENCODINGS[encoding]
        assert (msg.height, msg.width, msg.encoding) == (H, W, encoding)
        assert msg.step == W * channels * np.dtype(kind).itemsize
        assert len(msg.data) == msg.step * H
        assert bool(msg.is_bigendian) == (bigendian and np.dtype(kind).itemsize > 1)
        assert (msg.header.stamp.sec, msg.header.frame_id) == (42, "cam")
        back = image_to_array(msg)
        assert back.shape == pixels.shape
        np.testing.assert_array_equal(back, pixels)
        assert np.shares_memory(back, data_view(msg))

    @pytest.mark.parametrize("encoding", list(ENCODINGS))
    def test_through_the_wire_format(self, encoding):
        """Serialized and deserialized as rclpy does for DDS: same pixels, still zero-copy."""
        pixels = sample(encoding, seed=1)
        msg = deserialize_message(serialize_message(array_to_image(pixels, encoding)), Image)
        back = image_to_array(msg)
        np.testing.assert_array_equal(back, pixels)
        assert np.shares_memory(back, data_view(msg))

    def test_non_contiguous_array_is_copied_once_densely(self):
        pixels = sample("rgb8")[:, ::-1, ::-1]  # negative strides
        msg = array_to_image(pixels, "rgb8")
        assert msg.step == 3 * W
        np.testing.assert_array_equal(image_to_array(msg), pixels)

    def test_single_channel_accepts_trailing_axis(self):
        pixels = sample("mono8")
        np.testing.assert_array_equal(
            image_to_array(array_to_image(pixels[..., None], "mono8")), pixels
        )


class TestMessageLayout:
    @pytest.mark.parametrize("encoding", list(ENCODINGS))
    def test_step_padding_is_skipped_without_copy(self, encoding):
        pixels = sample(encoding, seed=2)
        msg = message(pixels, encoding, pad=5)
        back = image_to_array(msg)
        np.testing.assert_array_equal(back, pixels)
        assert np.shares_memory(back, data_view(msg))
        assert back.strides[0] == msg.step

    @pytest.mark.parametrize("encoding", ["mono16", "32FC1"])
    def test_big_endian_data_reads_correctly(self, encoding):
        pixels = sample(encoding, seed=3)  # little-endian values
        msg = message(pixels, encoding, pad=2, bigendian=True)
        first = pixels.reshape(-1)[:1]
        assert (
            data_view(msg)[: first.itemsize].tobytes()
            == first.astype(">" + first.dtype.str[1:]).tobytes()
        )
        back = image_to_array(msg)
        assert back.dtype.byteorder == ">"
        np.testing.assert_array_equal(back, pixels)
        again = image_to_array(array_to_image(back, encoding))
        np.testing.assert_array_equal(again, pixels)

    def test_mono16_big_endian_bytes_by_hand(self):
        msg = Image(height=1, width=2, encoding="mono16", is_bigendian=1, step=4)
        msg.data = bytes([0x01, 0x02, 0xFF, 0x00])
        assert image_to_array(msg).tolist() == [[0x0102, 0xFF00]]
        msg.is_bigendian = 0
        assert image_to_array(msg).tolist() == [[0x0201, 0x00FF]]


class TestToRgb8:
    def expected(self, encoding: str, pixels: np.ndarray) -> np.ndarray:
        if encoding == "rgb8":
            return pixels
        if encoding == "bgr8":
            return pixels[..., ::-1]
        if encoding == "rgba8":
            return pixels[..., :3]
        if encoding == "bgra8":
            return pixels[..., [2, 1, 0]]
        grey = pixels if encoding == "mono8" else np.rint(pixels / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)

    @pytest.mark.parametrize("encoding", INPUT_ENCODINGS)
    @pytest.mark.parametrize("pad", [0, 3])
    def test_every_input_encoding(self, encoding, pad):
        pixels = sample(encoding, seed=4)
        rgb = image_to_rgb8(message(pixels, encoding, pad=pad))
        assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
        np.testing.assert_array_equal(rgb, self.expected(encoding, pixels))

    @pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
    def test_colour_encodings_are_views(self, encoding):
        msg = message(sample(encoding), encoding, pad=1)
        assert np.shares_memory(image_to_rgb8(msg), data_view(msg))

    def test_mono16_scaling_endpoints(self):
        msg = array_to_image(np.array([[0, 65535, 257, 32768, 128]], np.uint16), "mono16")
        assert image_to_rgb8(msg)[0, :, 0].tolist() == [0, 255, 1, 128, 0]

    def test_float_image_is_not_a_camera_image(self):
        with pytest.raises(ImageFormatError, match="32FC1") as err:
            image_to_rgb8(array_to_image(sample("32FC1"), "32FC1"))
        assert err.value.kind == "encoding"


class TestRejections:
    def good(self) -> Image:
        return message(sample("rgb8"), "rgb8", pad=2)

    def test_good_message_passes(self):
        check_image(self.good(), max_pixels=H * W)

    @pytest.mark.parametrize(
        ("change", "kind", "words"),
        [
            ({"encoding": "yuv422"}, "encoding", ["yuv422", "rgb8"]),
            ({"encoding": "8UC3"}, "encoding", ["8UC3"]),
            ({"height": 0, "data": b""}, "empty", ["zero-size", "7x0"]),
            ({"width": 0}, "empty", ["zero-size"]),
            ({"step": 3 * W - 1}, "step", ["step 20", "21"]),
            ({"data": bytes(10)}, "length", ["10 bytes", "step x height"]),
            ({"data": bytes((3 * W + 2) * H + 1)}, "length", ["116 bytes"]),
        ],
    )
    def test_malformed(self, change, kind, words):
        msg = self.good()
        for field, value in change.items():
            setattr(msg, field, value)
        for fn in (check_image, image_to_array, image_to_rgb8):
            with pytest.raises(ImageFormatError) as err:
                fn(msg)
            assert err.value.kind == kind
            for word in words:
                assert word in str(err.value)

    def test_oversize(self):
        with pytest.raises(ImageFormatError, match="35 pixels, more than max_pixels 34") as err:
            image_to_rgb8(self.good(), max_pixels=H * W - 1)
        assert err.value.kind == "oversize"

    @pytest.mark.parametrize(
        ("pixels", "encoding"),
        [
            (np.zeros((H, W, 3), np.float32), "rgb8"),
            (np.zeros((H, W), np.uint8), "rgb8"),
            (np.zeros((H, W, 4), np.uint8), "bgr8"),
            (np.zeros((H, W), np.uint8), "mono16"),
            (np.zeros((H, W), np.float64), "32FC1"),
            (np.zeros((H, W), np.uint8), "nv12"),
        ],
    )
    def test_array_that_does_not_fit_the_encoding(self, pixels, encoding):
        with pytest.raises(ImageFormatError):
            array_to_image(pixels, encoding)
