"""Tests of instrument_seg.training.crf_loss: the local gated-CRF (Potts) term."""

from __future__ import annotations

import math

import pytest
import torch

from instrument_seg.errors import InputError
from instrument_seg.training.crf_loss import CRFLoss, crf_kernel, crf_loss
from instrument_seg.training.losses import AGSDLoss
from loss_support import random_loss_batch


def _pair_image(p: tuple[float, float], rgb: tuple[tuple[float, ...], tuple[float, ...]]):
    """A 1x2 image: two pixels side by side."""
    pt = torch.tensor(p, dtype=torch.float32).view(1, 1, 1, 2)
    ct = torch.tensor(rgb, dtype=torch.float32).t().reshape(1, 3, 1, 2)
    return pt, ct


class TestCRFLoss:
    def test_two_pixels_by_hand(self) -> None:
        p, rgb = _pair_image((0.9, 0.2), ((0.5, 0.5, 0.5), (0.6, 0.5, 0.5)))
        got = crf_loss(p, rgb, sigma_rgb=0.1, sigma_xy=2.0, radius=1, downsample=1)
        w = math.exp(-1.0 / (2 * 4.0) - 0.01 / (2 * 0.01))
        disagree = 0.9 * 0.8 + 0.1 * 0.2
        # each pixel sees the other once; the mean is over the 2 pixels
        assert got.item() == pytest.approx(2 * w * disagree / 2, rel=1e-5)

    def test_constant_labels_cost_nothing(self) -> None:
        rgb = torch.rand(2, 3, 12, 16)
        for value in (0.0, 1.0):
            p = torch.full((2, 1, 12, 16), value)
            assert crf_loss(p, rgb, radius=3).item() == pytest.approx(0.0, abs=1e-7)

    def test_colour_edge_is_cheap_to_cut(self) -> None:
        # left half grey, right half red: a cut along the colour edge costs far less than a
        # cut through the middle of the grey half
        rgb = torch.zeros(1, 3, 16, 16)
        rgb[:, :, :, :8] = 0.5
        rgb[:, 0, :, 8:] = 0.9
        along = torch.zeros(1, 1, 16, 16)
        along[..., :8] = 1.0
        across = torch.zeros(1, 1, 16, 16)
        across[..., :4] = 1.0
        cost_along = crf_loss(along, rgb, downsample=1, radius=3).item()
        cost_across = crf_loss(across, rgb, downsample=1, radius=3).item()
        assert cost_along < 0.01 * cost_across

    def test_gradient_pulls_open_pixels_to_similar_neighbours(self) -> None:
        rgb = torch.full((1, 3, 8, 8), 0.5)
        z = torch.zeros(1, 1, 8, 8)
        z[..., :, :4] = 6.0  # confident tool on the left, open (p = 0.5) on the right
        z.requires_grad_(True)
        CRFLoss(radius=2, downsample=1)(z, rgb).backward()
        # same colour everywhere: the open pixels next to the tool are pushed up (negative
        # gradient on the logit)
        assert (z.grad[..., :, 4] < 0).all()

    def test_pairs_leaving_the_view_do_not_count(self) -> None:
        rgb = torch.full((1, 3, 8, 8), 0.5)
        p = torch.zeros(1, 1, 8, 8)
        p[..., :, 4:] = 1.0
        valid = torch.ones(1, 1, 8, 8)
        assert crf_loss(p, rgb, valid, radius=2, downsample=1).item() > 0
        valid[..., :, 4:] = 0.0  # the labelled half is outside the view
        assert crf_loss(p, rgb, valid, radius=2, downsample=1).item() == pytest.approx(0.0)

    def test_kernel_is_symmetric_and_zero_on_the_centre(self) -> None:
        rgb = torch.rand(1, 3, 6, 7)
        w = crf_kernel(rgb, None, 0.1, 6.0, 2)
        assert w.shape == (1, 25, 42)
        assert torch.all(w[:, 12] == 0)
        dense = torch.zeros(42, 42)
        for k in range(25):
            dy, dx = divmod(k, 5)
            dy, dx = dy - 2, dx - 2
            for i in range(42):
                y, x = divmod(i, 7)
                if 0 <= y + dy < 6 and 0 <= x + dx < 7:
                    dense[i, (y + dy) * 7 + x + dx] = w[0, k, i]
        torch.testing.assert_close(dense, dense.t())

    def test_downsampling_works_on_odd_sizes(self) -> None:
        p = torch.rand(2, 1, 15, 21)
        rgb = torch.rand(2, 3, 15, 21)
        valid = torch.ones(2, 1, 15, 21)
        assert torch.isfinite(crf_loss(p, rgb, valid, downsample=2))

    @pytest.mark.parametrize(
        ("p_shape", "rgb_shape"),
        [((1, 2, 4, 4), (1, 3, 4, 4)), ((1, 1, 4, 4), (1, 1, 4, 4)), ((1, 1, 4, 4), (1, 3, 4, 5))],
    )
    def test_bad_shapes(self, p_shape, rgb_shape) -> None:
        with pytest.raises(InputError):
            crf_loss(torch.rand(p_shape), torch.rand(rgb_shape))

    def test_bad_settings(self) -> None:
        with pytest.raises(InputError, match="crf_sigma_rgb"):
            CRFLoss(sigma_rgb=0.0)
        with pytest.raises(InputError, match="crf_radius"):
            CRFLoss(radius=0)


class TestAGSDLossWithCRF:
    def _batch(self) -> dict[str, torch.Tensor]:
        rgb = (2, 3, 16, 20)
        return random_loss_batch((2, 1, 16, 20), {"rgb_t": rgb, "rgb_t1": rgb})

    def test_total_adds_the_weighted_term(self) -> None:
        b = self._batch()
        off, parts_off = AGSDLoss(use_fg=False, use_bg=False)(**b)
        on, parts_on = AGSDLoss(use_fg=False, use_bg=False, crf_weight=0.5)(**b)
        crf = CRFLoss()
        expected = crf(b["z_t"], b["rgb_t"]) + crf(b["z_t1"], b["rgb_t1"])
        assert parts_off["crf"] == 0.0
        assert parts_on["crf"] == pytest.approx(expected.item(), rel=1e-5)
        assert on.item() == pytest.approx(off.item() + 0.5 * expected.item(), rel=1e-5)

    def test_needs_colours_when_on(self) -> None:
        b = self._batch()
        del b["rgb_t"], b["rgb_t1"]
        AGSDLoss(use_fg=False, use_bg=False)(**b)  # off: not needed
        with pytest.raises(InputError, match="rgb_t"):
            AGSDLoss(use_fg=False, use_bg=False, crf_weight=0.1)(**b)

    def test_negative_weight_is_refused(self) -> None:
        with pytest.raises(InputError, match="crf_weight"):
            AGSDLoss(crf_weight=-1.0)
