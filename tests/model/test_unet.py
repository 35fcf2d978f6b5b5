"""Tests of instrument_seg.model.unet: the vanilla U-Net."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from instrument_seg.errors import InputError
from instrument_seg.model.unet import UNet, count_parameters

#: Parameters of the classic U-Net (width 64, depth 4, transposed convs, BN, 1 output channel).
PAPER_UNET_PARAMETERS = 31_037_633


class TestUNet:
    @pytest.mark.parametrize("bilinear", [False, True])
    def test_output_shape(self, bilinear: bool) -> None:
        model = UNet(width=8, bilinear=bilinear)
        out = model(torch.rand(2, 3, 64, 96))
        assert out.shape == (2, 1, 64, 96)
        assert out.dtype == torch.float32

    def test_depth_and_channels(self) -> None:
        model = UNet(in_channels=1, out_channels=2, width=4, depth=2)
        assert model.multiple == 4
        assert model(torch.rand(1, 1, 12, 8)).shape == (1, 2, 12, 8)

    def test_paper_parameter_count(self) -> None:
        n64 = count_parameters(UNet(width=64))
        n16 = count_parameters(UNet(width=16))
        print(f"UNet parameters: width 64 {n64:,}, width 16 {n16:,}")
        assert n64 == PAPER_UNET_PARAMETERS
        assert 1.8e6 < n16 < 2.0e6

    def test_bad_size_names_a_working_size(self) -> None:
        model = UNet(width=4)
        with pytest.raises(InputError, match=r"250x320 is not a multiple of 16.*256x320"):
            model(torch.rand(1, 3, 250, 320))

    def test_bad_channels(self) -> None:
        with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
            UNet(width=4)(torch.rand(1, 1, 32, 32))
        with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
            UNet(width=4)(torch.rand(3, 32, 32))

    def test_bad_arguments(self) -> None:
        with pytest.raises(InputError, match="width"):
            UNet(width=0)

    def test_forward_backward_smoke(self) -> None:
        torch.manual_seed(0)
        model = UNet(width=4, depth=3)
        target = (torch.rand(2, 1, 32, 40) > 0.5).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(torch.rand(2, 3, 32, 40)), target
        )
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert model.head.weight.grad.abs().sum() > 0
        assert model.inc[0].weight.grad.abs().sum() > 0

    def test_eval_is_deterministic(self) -> None:
        model = UNet(width=4, depth=2).eval()
        x = torch.rand(1, 3, 16, 16)
        with torch.no_grad():
            assert torch.equal(model(x), model(x))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter warns
class TestUNetExport:
    @pytest.mark.parametrize("bilinear", [False, True])
    def test_onnx_parity_with_dynamic_size(self, bilinear: bool) -> None:
        """One static graph (legacy exporter) that matches onnxruntime at another size."""
        ort = pytest.importorskip("onnxruntime")
        model = UNet(width=4, depth=3, bilinear=bilinear).eval()
        buf = io.BytesIO()
        torch.onnx.export(
            model,
            (torch.rand(1, 3, 64, 80),),
            buf,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}},
            opset_version=17,
            dynamo=False,
        )
        sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
        x = torch.rand(2, 3, 48, 96)
        got = sess.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
