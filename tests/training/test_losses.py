"""Tests of instrument_seg.training.losses: anchor, semantic diffusion and full loss."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from instrument_seg.config import load_config
from instrument_seg.errors import InputError
from instrument_seg.training.losses import (
    HINGE_STATS,
    AGSDLoss,
    AnchorLoss,
    SemanticDiffusionLoss,
    anchor_loss,
    anchor_loss_log,
    anchor_loss_paper,
    diffusion_terms,
    pool_fg_bg,
    semantic_diffusion,
)
from instrument_seg.training.pooling import cell_weights, l2_normalize_pixels
from loss_support import random_loss_batch

R2 = 1.0 / math.sqrt(2.0)


def _map(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, len(rows), len(rows[0]))


def _vec(*rows: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


class TestAnchorLoss:
    def test_paper_hand_computed(self) -> None:
        p = _map([[0.2, 0.8], [0.5, 1.0]])
        a_pos = _map([[1.0, 0.0], [0.5, 0.0]])
        a_neg = _map([[0.0, 1.0], [0.0, 0.5]])
        # pixels: -0.2, -(1 - 0.8) = -0.2, -0.25, -0.5 * 0 = 0
        assert float(anchor_loss_paper(p, a_pos, a_neg)) == pytest.approx(-0.65 / 4)

    def test_log_hand_computed(self) -> None:
        z = _map([[0.0, math.log(3.0)], [-math.log(3.0), 0.0]])
        a_pos = _map([[1.0, 1.0], [0.0, 0.0]])
        a_neg = _map([[0.0, 0.0], [1.0, 0.0]])
        # sigmoid: 0.5, 0.75, 0.25, 0.5
        expected = 1.5 * -(math.log(0.5) + math.log(0.75)) / 4 + 1.0 * -math.log(0.75) / 4
        assert float(anchor_loss_log(z, a_pos, a_neg)) == pytest.approx(expected, rel=1e-6)
        expected_w = 2.0 * -(math.log(0.5) + math.log(0.75)) / 4 + 3.0 * -math.log(0.75) / 4
        got = anchor_loss_log(z, a_pos, a_neg, w_pos=2.0, w_neg=3.0)
        assert float(got) == pytest.approx(expected_w, rel=1e-6)

    def test_log_is_stable_for_large_logits(self) -> None:
        z = _map([[100.0, -100.0]])
        loss = anchor_loss_log(z, _map([[0.0, 1.0]]), _map([[1.0, 0.0]]))
        assert math.isfinite(float(loss)) and float(loss) == pytest.approx(1.5 * 50 + 50)

    @pytest.mark.parametrize("form", ["log", "paper"])
    def test_gradient_direction(self, form: str) -> None:
        """A positive anchor pushes its logit up, a negative anchor pushes it down."""
        z = torch.zeros(1, 1, 1, 3, requires_grad=True)
        a_pos = _map([[1.0, 0.0, 0.0]])
        a_neg = _map([[0.0, 1.0, 0.0]])
        AnchorLoss(form)(z, a_pos, a_neg).backward()
        grad = z.grad.flatten()
        assert grad[0] < 0  # gradient descent raises the logit
        assert grad[1] > 0  # gradient descent lowers the logit
        assert grad[2] == 0  # no anchor, no supervision

    def test_module_matches_functions(self) -> None:
        torch.manual_seed(0)
        z = torch.randn(2, 1, 4, 4)
        a_pos, a_neg = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
        torch.testing.assert_close(AnchorLoss()(z, a_pos, a_neg), anchor_loss_log(z, a_pos, a_neg))
        torch.testing.assert_close(
            AnchorLoss("paper")(z, a_pos, a_neg), anchor_loss_paper(torch.sigmoid(z), a_pos, a_neg)
        )
        for form in ("log", "paper"):
            module = AnchorLoss(form, w_pos=2.0, w_neg=0.5)
            expected = anchor_loss(z, a_pos, a_neg, form, w_pos=2.0, w_neg=0.5)
            assert torch.equal(module(z, a_pos, a_neg), expected)

    def test_shape_mismatch(self) -> None:
        z = torch.zeros(1, 1, 2, 2)
        with pytest.raises(InputError, match=r"a_pos has shape \(1, 1, 2, 3\)"):
            anchor_loss_log(z, torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 2, 2))
        with pytest.raises(InputError, match=r"p must be a \(B, 1, H, W\)"):
            anchor_loss_paper(torch.zeros(1, 2, 2, 2), z, z)
        with pytest.raises(InputError, match=r"a_neg must be a \(B, 1, H, W\)"):
            anchor_loss_paper(z, z, torch.zeros(2, 2))

    def test_bad_form(self) -> None:
        with pytest.raises(InputError, match="'dice'"):
            AnchorLoss("dice")
        z = torch.zeros(1, 1, 2, 2)
        with pytest.raises(InputError, match="'dice'"):
            anchor_loss(z, z, z, form="dice")
        with pytest.raises(InputError, match=r"z must be a \(B, 1, H, W\)"):
            anchor_loss(torch.zeros(1, 2, 2, 2), z, z, form="paper")


class TestPoolFgBg:
    def test_hand_computed_same_size(self) -> None:
        p = _map([[1.0, 0.0], [0.5, 0.0]])
        feats = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]).unsqueeze(0)
        fg, bg = pool_fg_bg(p, feats, weighted_mean=False, l2_normalize=False)
        # fg = 1*F(0,0) + 0.5*F(1,0); bg = 1*F(0,1) + 0.5*F(1,0) + 1*F(1,1)
        torch.testing.assert_close(fg, torch.tensor([[1.0 + 1.5, 0.0 + 0.5]]))
        torch.testing.assert_close(bg, torch.tensor([[2.0 + 1.5 + 4.0, 1.0 + 0.5 + 0.0]]))
        fg_m, bg_m = pool_fg_bg(p, feats, weighted_mean=True, l2_normalize=False)
        torch.testing.assert_close(fg_m, fg / 1.5, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bg_m, bg / 2.5, rtol=1e-5, atol=1e-6)

    def test_area_resize_equals_nearest_upsampled_features(self) -> None:
        """Reducing p by area averaging == pooling nearest-upsampled features at full size."""
        torch.manual_seed(0)
        p = torch.rand(2, 1, 16, 24)
        feats = torch.randn(2, 5, 4, 6)
        up = F.interpolate(feats, size=(16, 24), mode="nearest")
        for weighted in (True, False):
            small = pool_fg_bg(p, feats, weighted, l2_normalize=False, upsampling="nearest")
            full = pool_fg_bg(p, up, weighted, l2_normalize=False)
            scale = 1.0 if weighted else 16.0  # each feature cell covers 4x4 prediction pixels
            for a, b in zip(small, full, strict=True):
                torch.testing.assert_close(a * scale, b, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("l2", [True, False])
    def test_bilinear_equals_bilinearly_upsampled_features(self, l2: bool) -> None:
        """The transposed-interpolation pooling == pooling explicitly upsampled features."""
        torch.manual_seed(1)
        p = torch.rand(2, 1, 16, 24, dtype=torch.float64)
        feats = torch.rand(2, 5, 4, 6, dtype=torch.float64)
        f = l2_normalize_pixels(feats) if l2 else feats
        up = F.interpolate(f, size=(16, 24), mode="bilinear", align_corners=False)
        for weighted in (True, False):
            small = pool_fg_bg(p, feats, weighted, l2_normalize=l2)
            full = pool_fg_bg(p, up, weighted, l2_normalize=False)
            scale = 1.0 if weighted else 16.0
            for a, b in zip(small, full, strict=True):
                torch.testing.assert_close(a * scale, b, rtol=1e-6, atol=1e-7)

    def test_bilinear_gradient_varies_inside_a_feature_cell(self) -> None:
        """Nearest pooling pushes a whole 8x8 cell alike; bilinear does not (smoother masks)."""
        torch.manual_seed(2)
        feats = torch.rand(1, 4, 2, 2) + 0.1
        grads = {}
        for mode in ("nearest", "bilinear"):
            p = torch.linspace(0.1, 0.9, 256).view(1, 1, 16, 16).requires_grad_()
            fg, bg = pool_fg_bg(p, feats, upsampling=mode)
            F.cosine_similarity(fg, bg).sum().backward()
            grads[mode] = p.grad[0, 0, :8, :8]
        assert torch.allclose(grads["nearest"], grads["nearest"][0, 0].expand(8, 8))
        assert grads["bilinear"].std() > 0.1 * grads["bilinear"].abs().mean()

    def test_unknown_upsampling(self) -> None:
        with pytest.raises(InputError, match="unknown upsampling 'cubic'"):
            pool_fg_bg(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 4, 4), upsampling="cubic")

    def test_every_prediction_pixel_gets_gradient(self) -> None:
        z = torch.zeros(1, 1, 32, 32, requires_grad=True)
        fg, _ = pool_fg_bg(torch.sigmoid(z), torch.rand(1, 3, 2, 2) + 0.1, weighted_mean=False)
        fg.sum().backward()
        assert (z.grad != 0).all()

    def test_l2_normalize_pixels(self) -> None:
        feats = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
        torch.testing.assert_close(
            l2_normalize_pixels(feats).flatten(), torch.tensor([0.6, 0.8]), atol=1e-6, rtol=0
        )

    def test_shapes(self) -> None:
        fg, bg = pool_fg_bg(torch.rand(3, 1, 8, 8), torch.rand(3, 7, 4, 4))
        assert fg.shape == bg.shape == (3, 7)
        with pytest.raises(InputError, match="batch size 2"):
            pool_fg_bg(torch.rand(3, 1, 8, 8), torch.rand(2, 7, 4, 4))
        with pytest.raises(InputError, match=r"feats must be a \(B, C, h, w\)"):
            pool_fg_bg(torch.rand(3, 1, 8, 8), torch.rand(3, 7, 4))


class TestSemanticDiffusion:
    def test_paper_and_official_hand_computed(self) -> None:
        # Example 0: phi(fg_t,bg_t)=0, phi(fg_t1,bg_t1)=1/sqrt2, phi(fg_t,fg_t1)=1/sqrt2,
        # phi(bg_t,bg_t1)=0.  Example 1: every phi = 1/sqrt2.
        fg_t = _vec((1, 0), (1, 0))
        bg_t = _vec((0, 1), (1, 1))
        fg_t1 = _vec((1, 1), (1, 1))
        bg_t1 = _vec((1, 0), (0, 1))
        l_fg, l_bg = semantic_diffusion(fg_t, bg_t, fg_t1, bg_t1)  # paper, 0.2 / 0.8
        # ex0: fg max(0 + R2 - 2 R2 + 0.2, 0) = 0; bg: R2 - 0 + 0.8.  ex1: 0.2 and 0.8.
        assert float(l_fg) == pytest.approx((0.0 + 0.2) / 2, abs=1e-6)
        assert float(l_bg) == pytest.approx((R2 + 0.8 + 0.8) / 2, abs=1e-6)
        l_fg, l_bg = semantic_diffusion(fg_t, bg_t, fg_t1, bg_t1, form="official")  # 0.05/0.45
        # ex0: fg max(R2/2 - R2 + 0.05, 0) = 0; bg: R2/2 + 0.45.  ex1: 0.05 and 0.45.
        assert float(l_fg) == pytest.approx((0.0 + 0.05) / 2, abs=1e-6)
        assert float(l_bg) == pytest.approx((R2 / 2 + 0.45 + 0.45) / 2, abs=1e-6)

    def test_hinge_stats_hand_computed(self) -> None:
        # The two examples of test_paper_and_official_hand_computed: ex0's fg hinge is 0
        # (inactive), every other hinge is active.
        fg_t = _vec((1, 0), (1, 0))
        bg_t = _vec((0, 1), (1, 1))
        fg_t1 = _vec((1, 1), (1, 1))
        bg_t1 = _vec((1, 0), (0, 1))
        stats: dict[str, float] = {}
        semantic_diffusion(fg_t, bg_t, fg_t1, bg_t1, stats=stats)
        assert set(stats) == set(HINGE_STATS)
        assert stats["cos_fg_bg"] == pytest.approx(((0 + R2) / 2 + (R2 + R2) / 2) / 2)
        assert stats["cos_fg_fg"] == pytest.approx(R2)
        assert stats["cos_bg_bg"] == pytest.approx((0 + R2) / 2)
        assert stats["fg_active"] == 0.5 and stats["bg_active"] == 1.0
        fg, bg = _vec((1, 0)), _vec((0, 1))
        semantic_diffusion(fg, bg, fg.clone(), bg.clone(), stats=stats)  # margins met
        assert stats["fg_active"] == stats["bg_active"] == 0.0
        assert stats["cos_fg_bg"] == 0.0 and stats["cos_fg_fg"] == stats["cos_bg_bg"] == 1.0

    def test_hinge_is_zero_when_margin_is_met(self) -> None:
        fg, bg = _vec((1, 0)), _vec((0, 1))
        for form in ("paper", "official"):
            l_fg, l_bg = semantic_diffusion(fg, bg, fg.clone(), bg.clone(), form=form)
            assert float(l_fg) == 0.0 and float(l_bg) == 0.0
        fg_t = torch.tensor([[1.0, 0.0]], requires_grad=True)
        l_fg, _ = semantic_diffusion(fg_t, bg, fg.clone(), bg.clone())
        l_fg.backward()
        assert torch.equal(fg_t.grad, torch.zeros_like(fg_t))

    def test_official_is_half_the_paper_form_with_double_margin(self) -> None:
        torch.manual_seed(0)
        v = [torch.randn(4, 6) for _ in range(4)]
        off = semantic_diffusion(*v, m_fg=0.05, m_bg=0.45, form="official")
        pap = semantic_diffusion(*v, m_fg=0.1, m_bg=0.9, form="paper")
        for a, b in zip(off, pap, strict=True):
            assert float(a) == pytest.approx(0.5 * float(b), abs=1e-6)

    def test_explicit_margins(self) -> None:
        fg, bg = _vec((1, 0)), _vec((0, 1))
        l_fg, l_bg = semantic_diffusion(fg, bg, fg, bg, m_fg=2.5, m_bg=3.0)
        assert float(l_fg) == pytest.approx(0.5) and float(l_bg) == pytest.approx(1.0)

    def test_bad_input(self) -> None:
        v = _vec((1, 0))
        with pytest.raises(InputError, match=r"bg_t1 has shape \(1, 3\)"):
            semantic_diffusion(v, v, v, _vec((1, 0, 0)))
        with pytest.raises(InputError, match=r"fg_t must be a \(B, C\)"):
            semantic_diffusion(torch.ones(2), v, v, v)
        with pytest.raises(InputError, match="'half'"):
            semantic_diffusion(v, v, v, v, form="half")

    def test_diffusion_gradient_reaches_the_logits(self) -> None:
        """An active hinge moves the prediction.

        (At p = 0.5 everywhere with equal weights the gradient is exactly 0: fg and bg pools
        coincide and the first-order changes of the two terms cancel, so use random logits.)
        """
        torch.manual_seed(0)
        z_t = torch.randn(1, 1, 8, 8, requires_grad=True)
        z_t1 = torch.randn(1, 1, 8, 8, requires_grad=True)
        loss = SemanticDiffusionLoss()(z_t, z_t1, torch.rand(1, 4, 4, 4), torch.rand(1, 4, 4, 4))
        assert float(loss.detach()) > 0
        loss.backward()
        assert z_t.grad.abs().sum() > 0 and z_t1.grad.abs().sum() > 0

    def test_diffusion_terms_pool_then_compare(self) -> None:
        torch.manual_seed(3)
        z_t, z_t1 = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
        f_t, f_t1 = torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)
        for form, up in (("paper", "bilinear"), ("official", "nearest")):
            got = diffusion_terms(z_t, z_t1, f_t, f_t1, form=form, upsampling=up)
            fg_t, bg_t = pool_fg_bg(torch.sigmoid(z_t), f_t, upsampling=up)
            fg_t1, bg_t1 = pool_fg_bg(torch.sigmoid(z_t1), f_t1, upsampling=up)
            expected = semantic_diffusion(fg_t, bg_t, fg_t1, bg_t1, form=form)
            for a, b in zip(got, expected, strict=True):
                assert torch.equal(a, b)
            module = SemanticDiffusionLoss(form, upsampling=up)
            for a, b in zip(module.parts(z_t, z_t1, f_t, f_t1), got, strict=True):
                assert torch.equal(a, b)

    def test_diffusion_terms_bad_input(self) -> None:
        z, f = torch.zeros(1, 1, 8, 8), torch.rand(1, 4, 2, 2)
        with pytest.raises(InputError, match=r"z_t1 has shape \(1, 1, 8, 4\)"):
            diffusion_terms(z, torch.zeros(1, 1, 8, 4), f, f)
        with pytest.raises(InputError, match=r"feats_t1 has shape \(1, 4, 1, 2\)"):
            diffusion_terms(z, z, f, torch.rand(1, 4, 1, 2))
        with pytest.raises(InputError, match=r"feats_t must be a \(B, C, h, w\)"):
            diffusion_terms(z, z, torch.rand(4, 2, 2), f)


class TestAGSDLoss:
    """The full loss (Eq. 5), built from the anchor and semantic-diffusion modules."""

    @staticmethod
    def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
        feats = (2, 8, 4, 4)
        return random_loss_batch((2, 1, 16, 16), {"feats_t": feats, "feats_t1": feats}, seed)

    def test_equation_5(self) -> None:
        b = self._batch()
        total, parts = AGSDLoss(diffusion_form="official", weights=(0.5, 2.0))(**b)
        anc = anchor_loss_log(b["z_t"], b["a_pos_t"], b["a_neg_t"]) + anchor_loss_log(
            b["z_t1"], b["a_pos_t1"], b["a_neg_t1"]
        )
        fg_t, bg_t = pool_fg_bg(torch.sigmoid(b["z_t"]), b["feats_t"])
        fg_t1, bg_t1 = pool_fg_bg(torch.sigmoid(b["z_t1"]), b["feats_t1"])
        l_fg, l_bg = semantic_diffusion(fg_t, bg_t, fg_t1, bg_t1, form="official")
        torch.testing.assert_close(total, anc + 0.5 * l_fg + 2.0 * l_bg)
        assert set(parts) == {"anc_t", "anc_t1", "fg", "bg", "crf", "total", *HINGE_STATS}
        assert all(isinstance(v, float) for v in parts.values())
        assert parts["fg"] == pytest.approx(float(l_fg))
        assert parts["total"] == pytest.approx(float(total))

    def test_ablation_switches(self) -> None:
        b = self._batch()
        anc_only, parts = AGSDLoss(use_fg=False, use_bg=False)(
            **{**b, "feats_t": None, "feats_t1": None}
        )
        assert parts["fg"] == parts["bg"] == 0.0
        assert not set(HINGE_STATS) & set(parts)  # no diffusion, no hinge diagnostics
        assert float(anc_only) == pytest.approx(parts["anc_t"] + parts["anc_t1"], rel=1e-6)
        with_fg, p_fg = AGSDLoss(use_bg=False)(**b)
        with_bg, p_bg = AGSDLoss(use_fg=False)(**b)
        full, p_full = AGSDLoss()(**b)
        assert p_fg["bg"] == 0.0 and p_bg["fg"] == 0.0
        assert float(with_fg) == pytest.approx(float(anc_only) + p_full["fg"], rel=1e-6)
        assert float(with_bg) == pytest.approx(float(anc_only) + p_full["bg"], rel=1e-6)
        assert float(full) == pytest.approx(float(anc_only) + p_full["fg"] + p_full["bg"])

    def test_features_required_when_diffusion_is_on(self) -> None:
        b = {**self._batch(), "feats_t1": None}
        with pytest.raises(InputError, match="feats_t and feats_t1 are required"):
            AGSDLoss()(**b)

    def test_shape_mismatch(self) -> None:
        b = self._batch()
        with pytest.raises(InputError, match="a_neg_t1 has shape"):
            AGSDLoss()(**{**b, "a_neg_t1": torch.rand(2, 1, 16, 8)})
        with pytest.raises(InputError, match="feats_t1 has shape"):
            AGSDLoss()(**{**b, "feats_t1": torch.rand(2, 8, 2, 2)})

    def test_modules_from_config_style_kwargs(self) -> None:
        b = self._batch()
        cfg = {
            "anchor_form": "paper",
            "diffusion_form": "official",
            "margins": [0.05, 0.45],
            "weights": [0.5, 2],
            "use_fg": False,
        }
        module = AGSDLoss(**cfg)
        assert module.needs_features
        total, parts = module(**b)
        anc_t = anchor_loss(b["z_t"], b["a_pos_t"], b["a_neg_t"], form="paper")
        anc_t1 = anchor_loss(b["z_t1"], b["a_pos_t1"], b["a_neg_t1"], form="paper")
        stats: dict[str, float] = {}
        _, l_bg = diffusion_terms(
            b["z_t"],
            b["z_t1"],
            b["feats_t"],
            b["feats_t1"],
            0.05,
            0.45,
            form="official",
            stats=stats,
        )
        torch.testing.assert_close(total, anc_t + anc_t1 + 2.0 * l_bg)
        ref_parts = {"anc_t": anc_t, "anc_t1": anc_t1, "fg": 0.0, "bg": l_bg, "crf": 0.0}
        ref_parts["total"] = total
        ref_parts.update(stats)
        assert parts == pytest.approx({k: float(v) for k, v in ref_parts.items()})
        diff = SemanticDiffusionLoss("official", weights=(0.5, 2.0))
        assert (diff.m_fg, diff.m_bg) == (0.05, 0.45)
        l_fg, l_bg = diff.parts(b["z_t"], b["z_t1"], b["feats_t"], b["feats_t1"])
        torch.testing.assert_close(
            diff(b["z_t"], b["z_t1"], b["feats_t"], b["feats_t1"]), 0.5 * l_fg + 2.0 * l_bg
        )

    def test_built_from_its_term_modules(self) -> None:
        """forward goes through ``anchor`` and ``diffusion`` (one computation path)."""
        b = self._batch()
        module = AGSDLoss(diffusion_form="official", weights=(0.5, 2.0))
        total, parts = module(**b)
        anc_t = module.anchor(b["z_t"], b["a_pos_t"], b["a_neg_t"])
        anc_t1 = module.anchor(b["z_t1"], b["a_pos_t1"], b["a_neg_t1"])
        l_fg, l_bg = module.diffusion.parts(b["z_t"], b["z_t1"], b["feats_t"], b["feats_t1"])
        assert torch.equal(total, anc_t + anc_t1 + 0.5 * l_fg + 2.0 * l_bg)
        assert (parts["anc_t"], parts["fg"], parts["bg"]) == (
            float(anc_t),
            float(l_fg),
            float(l_bg),
        )
        module.anchor.w_pos = 3.0  # the members are what forward uses
        assert float(module(**b)[0]) != float(total)

    def test_keywords_are_the_config_loss_keys(self) -> None:
        """``AGSDLoss(**config["loss"])`` builds the configured loss from the defaults YAML."""
        config = load_config([])
        assert set(inspect.signature(AGSDLoss).parameters) == set(config["loss"])
        module = AGSDLoss(**config["loss"])
        assert module.anchor.form == config["loss"]["anchor_form"]
        assert module.diffusion.upsampling == config["loss"]["upsampling"]
        assert module.diffusion.border_cells == 1
        # the default: the full loss with the CRF term (docs/results.md 9.5)
        assert module.needs_features and module.needs_rgb
        paper = load_config([Path(__file__).parents[2] / "config" / "paper.yaml"])["loss"]
        assert AGSDLoss(**paper).needs_features and AGSDLoss(**paper).diffusion.border_cells == 0

    def test_defaults(self) -> None:
        module = AGSDLoss()
        assert module.anchor.form == "log"
        assert (module.anchor.w_pos, module.anchor.w_neg) == (1.5, 1.0)
        d = module.diffusion
        assert (d.form, d.m_fg, d.m_bg, d.w_fg, d.w_bg) == ("paper", 0.2, 0.8, 1.0, 1.0)

    def test_bad_module_arguments(self) -> None:
        with pytest.raises(InputError, match="margins must be two numbers"):
            SemanticDiffusionLoss(margins=[0.1])
        with pytest.raises(InputError, match="'cosine'"):
            AGSDLoss(diffusion_form="cosine")


class TestBorderAndFieldOfView:
    """Cells on the frame's border ring and outside the field of view are in neither pool."""

    def test_cell_weights(self):
        w = cell_weights((4, 5), border_cells=1)
        assert w.shape == (1, 1, 4, 5)
        assert w[0, 0, 1:3, 1:4].eq(1).all() and w.sum() == 6
        assert cell_weights((4, 5)) is None
        valid = torch.zeros(2, 1, 8, 10)
        valid[:, :, :, :4] = 1  # left 4 of 10 columns: cells 0-1 fully, nothing else
        share = cell_weights((4, 5), 0, valid)
        assert share.shape == (2, 1, 4, 5)
        assert share[..., :2].eq(1).all() and share[..., 2:].eq(0).all()
        valid[:, :, :, 4] = 1  # half of cell 2's columns: it lies on the view's edge, out
        assert cell_weights((4, 5), 0, valid).equal(share)
        with pytest.raises(InputError, match="border_cells"):
            cell_weights((4, 5), border_cells=2)

    def test_border_cells_are_ignored(self):
        torch.manual_seed(0)
        feats = torch.rand(1, 6, 6, 8)
        p = torch.rand(1, 1, 6, 8)
        w = cell_weights((6, 8), border_cells=1)
        fg, bg = pool_fg_bg(p, feats, l2_normalize=False, weights=w)
        changed = feats.clone()
        changed[..., 0, :] = 100.0  # only border cells change
        changed[..., :, -1] = -7.0
        fg2, bg2 = pool_fg_bg(p, changed, l2_normalize=False, weights=w)
        torch.testing.assert_close(fg, fg2)
        torch.testing.assert_close(bg, bg2)
        inner_fg, _ = pool_fg_bg(p[..., 1:-1, 1:-1], feats[..., 1:-1, 1:-1], l2_normalize=False)
        torch.testing.assert_close(fg, inner_fg)

    def test_outside_the_field_of_view_is_ignored(self):
        torch.manual_seed(1)
        z = torch.randn(2, 1, 32, 32)
        feats = torch.rand(2, 8, 2, 2)
        valid = torch.zeros(2, 1, 32, 32)
        valid[..., :16] = 1.0  # the left half
        base = diffusion_terms(z, z.flip(0), feats, feats.flip(0), valid_t=valid, valid_t1=valid)
        other = feats.clone()
        other[..., 1] = 5.0  # right-hand cells only
        again = diffusion_terms(z, z.flip(0), other, other.flip(0), valid_t=valid, valid_t1=valid)
        torch.testing.assert_close(base[0], again[0])
        torch.testing.assert_close(base[1], again[1])
        loss = AGSDLoss(border_cells=0)
        a = torch.zeros_like(z)
        total, _ = loss(z, z, a, a, a, a, feats, other, valid, valid)
        assert torch.isfinite(total)
