"""Training losses of Liu et al. (MICCAI 2020), docs/method.md section 3.

Pure functions do the maths and check shapes; thin :class:`torch.nn.Module` wrappers hold the
hyper-parameters and call them, so every value is computed along one path:

- Anchor loss (Eq. 1): :func:`anchor_loss_paper` (linear in ``p``), :func:`anchor_loss_log`
  (the official code's weighted log form, the default); :func:`anchor_loss` / :class:`AnchorLoss`.
- Semantic diffusion (Eq. 2-4): :func:`pool_fg_bg` pools frozen CNN features with the predicted
  foreground / background, :func:`semantic_diffusion` compares the pools of two frames;
  :func:`diffusion_terms` / :class:`SemanticDiffusionLoss` do both from logits.
- Full loss (Eq. 5): :class:`AGSDLoss`, an ``AnchorLoss`` and a ``SemanticDiffusionLoss`` with
  the Table-1 switches, plus (beyond the paper) a weighted local gated-CRF term on the frames'
  colours (:mod:`instrument_seg.training.crf_loss`); ``AGSDLoss(**config["loss"])`` (keywords =
  config/train.yaml's keys).

Official half form. The authors' code (Finspire13/AGSD-Surgical-Instrument-Segmentation,
``utils.py::get_diffusion_loss``, MIT) computes::

    fg_diff = phi(fg_1, fg_2) - phi(fg_1, bg_1) / 2 - phi(fg_2, bg_2) / 2
    bg_diff = phi(bg_1, bg_2) - phi(fg_1, bg_1) / 2 - phi(fg_2, bg_2) / 2
    loss_fg = relu(fg_margin - fg_diff).mean() * fg_ratio     # 0.05, fg_ratio 0.5
    loss_bg = relu(bg_margin - bg_diff).mean() * bg_ratio     # 0.45, bg_ratio 2

i.e. ``max(0.5 * (phi(fg_t, bg_t) + phi(fg_t1, bg_t1)) - phi(fg_t, fg_t1) + m, 0)``: exactly half
of the paper's hinge with margin ``2 m`` (0.05 / 0.45 there = 0.1 / 0.9 in paper units). The same
code pools with the probability-weighted mean (divided by the mass), after L2-normalising every
feature pixel over channels (``featureL2Norm`` in its ``feature_extraction.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from instrument_seg.errors import InputError
from instrument_seg.training.crf_loss import CRFLoss
from instrument_seg.training.pooling import (
    UPSAMPLINGS,
    cell_weights,
    check_feats,
    check_map,
    check_same,
    pool_fg_bg,
)

#: Margins (m_fg, m_bg) per diffusion form.
DEFAULT_MARGINS: dict[str, tuple[float, float]] = {"paper": (0.2, 0.8), "official": (0.05, 0.45)}
#: Loss weights (w_fg, w_bg) of the official configuration (the paper's Eq. 5 uses 1, 1).
OFFICIAL_WEIGHTS: tuple[float, float] = (0.5, 2.0)
#: Forms of :func:`anchor_loss` and of :func:`semantic_diffusion`.
ANCHOR_FORMS = ("log", "paper")
DIFFUSION_FORMS = tuple(DEFAULT_MARGINS)
# What the diffusion hinges see each step (loss.csv columns, see semantic_diffusion's stats).
HINGE_STATS = ("cos_fg_bg", "cos_fg_fg", "cos_bg_bg", "fg_active", "bg_active")


# --------------------------------------------------------------------------------------------
# Shape checks
# --------------------------------------------------------------------------------------------


def _check_vectors(**vectors: torch.Tensor) -> None:
    ref_name, ref = next(iter(vectors.items()))
    for name, v in vectors.items():
        if not isinstance(v, torch.Tensor) or v.ndim != 2:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise InputError(f"{name} must be a (B, C) tensor, got {shape}.")
        if v.shape != ref.shape:
            raise InputError(
                f"{name} has shape {tuple(v.shape)} but {ref_name} has {tuple(ref.shape)}."
            )


def _form_margins(form: str, m_fg: float | None, m_bg: float | None) -> tuple[float, float]:
    if form not in DIFFUSION_FORMS:
        raise InputError(f"unknown diffusion form '{form}'; use 'paper' or 'official'.")
    d_fg, d_bg = DEFAULT_MARGINS[form]
    return (d_fg if m_fg is None else float(m_fg)), (d_bg if m_bg is None else float(m_bg))


# --------------------------------------------------------------------------------------------
# Anchor loss (Eq. 1)
# --------------------------------------------------------------------------------------------


def anchor_loss_paper(p: torch.Tensor, a_pos: torch.Tensor, a_neg: torch.Tensor) -> torch.Tensor:
    """Eq. 1 of the paper: ``mean(-a_pos * p - a_neg * (1 - p))``.

    Args:
        p: (B, 1, H, W) probabilities (``sigmoid`` of the logits).
        a_pos: (B, 1, H, W) positive anchor in [0, 1].
        a_neg: (B, 1, H, W) negative anchor in [0, 1].

    Returns:
        Scalar loss (mean over batch and pixels), in [-1, 0] for inputs in [0, 1].
    """
    check_same("p", p, a_pos=a_pos, a_neg=a_neg)
    return (-a_pos * p - a_neg * (1.0 - p)).mean()


def anchor_loss_log(
    z: torch.Tensor,
    a_pos: torch.Tensor,
    a_neg: torch.Tensor,
    w_pos: float = 1.5,
    w_neg: float = 1.0,
) -> torch.Tensor:
    """Anchor loss in the official code's log form (a soft, weighted cross-entropy).

    ``mean(-a_pos * logsigmoid(z)) * w_pos + mean(-a_neg * logsigmoid(-z)) * w_neg``.

    Args:
        z: (B, 1, H, W) logits.
        a_pos: (B, 1, H, W) positive anchor in [0, 1].
        a_neg: (B, 1, H, W) negative anchor in [0, 1].
        w_pos: Weight of the positive term (1.5 in the official config).
        w_neg: Weight of the negative term (1.0).

    Returns:
        Scalar loss, >= 0.
    """
    check_same("z", z, a_pos=a_pos, a_neg=a_neg)
    loss_pos = (-a_pos * F.logsigmoid(z)).mean()
    loss_neg = (-a_neg * F.logsigmoid(-z)).mean()
    return loss_pos * w_pos + loss_neg * w_neg


def anchor_loss(
    z: torch.Tensor,
    a_pos: torch.Tensor,
    a_neg: torch.Tensor,
    form: str = "log",
    w_pos: float = 1.5,
    w_neg: float = 1.0,
) -> torch.Tensor:
    """Anchor loss of logits in either form: :func:`anchor_loss_log` or, on ``sigmoid(z)``,
    :func:`anchor_loss_paper`.

    Args:
        z: (B, 1, H, W) logits.
        a_pos: (B, 1, H, W) positive anchor in [0, 1].
        a_neg: (B, 1, H, W) negative anchor in [0, 1].
        form: ``"log"`` (official code, default) or ``"paper"`` (Eq. 1).
        w_pos: Positive weight of the log form (unused by the paper form).
        w_neg: Negative weight of the log form (unused by the paper form).

    Returns:
        Scalar loss.
    """
    if form == "log":
        return anchor_loss_log(z, a_pos, a_neg, w_pos, w_neg)
    if form == "paper":
        check_map("z", z)
        return anchor_loss_paper(torch.sigmoid(z), a_pos, a_neg)
    raise InputError(f"unknown anchor loss form '{form}'; use 'log' or 'paper'.")


# --------------------------------------------------------------------------------------------
# Semantic diffusion (Eq. 2-4)
# --------------------------------------------------------------------------------------------


def semantic_diffusion(
    fg_t: torch.Tensor,
    bg_t: torch.Tensor,
    fg_t1: torch.Tensor,
    bg_t1: torch.Tensor,
    m_fg: float | None = None,
    m_bg: float | None = None,
    form: str = "paper",
    stats: dict[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantic-diffusion hinge losses (Eq. 3-4) with cosine similarity ``phi``.

    ``form="paper"``::

        L_fg = max(phi(fg_t, bg_t) + phi(fg_t1, bg_t1) - 2 phi(fg_t, fg_t1) + m_fg, 0)
        L_bg = max(phi(fg_t, bg_t) + phi(fg_t1, bg_t1) - 2 phi(bg_t, bg_t1) + m_bg, 0)

    ``form="official"`` (the authors' code, see the module docstring)::

        L_fg = max((phi(fg_t, bg_t) + phi(fg_t1, bg_t1)) / 2 - phi(fg_t, fg_t1) + m_fg, 0)

    and likewise for ``L_bg``. Weights (official: fg 0.5, bg 2) are applied by the caller.

    Args:
        fg_t: (B, C) foreground pool of frame t.
        bg_t: (B, C) background pool of frame t.
        fg_t1: (B, C) foreground pool of frame t+1 (or of a paired frame).
        bg_t1: (B, C) background pool of frame t+1.
        m_fg: Foreground margin; None uses the form's default (paper 0.2, official 0.05).
        m_bg: Background margin; None uses the form's default (paper 0.8, official 0.45).
        form: ``"paper"`` or ``"official"``.
        stats: optional dict filled with what the hinges see (for ``loss.csv``): the batch
            means of ``phi(fg, bg)`` (within a frame, averaged over both), ``phi(fg_t, fg_t1)``
            and ``phi(bg_t, bg_t1)``, and the share of pairs whose fg / bg hinge is active.

    Returns:
        ``(L_fg, L_bg)``, scalars (mean over the batch).
    """
    _check_vectors(fg_t=fg_t, bg_t=bg_t, fg_t1=fg_t1, bg_t1=bg_t1)
    m_fg, m_bg = _form_margins(form, m_fg, m_bg)
    cross = F.cosine_similarity(fg_t, bg_t, dim=1) + F.cosine_similarity(fg_t1, bg_t1, dim=1)
    same_fg = F.cosine_similarity(fg_t, fg_t1, dim=1)
    same_bg = F.cosine_similarity(bg_t, bg_t1, dim=1)
    if form == "paper":
        loss_fg = F.relu(cross - 2.0 * same_fg + m_fg)
        loss_bg = F.relu(cross - 2.0 * same_bg + m_bg)
    else:
        loss_fg = F.relu(0.5 * cross - same_fg + m_fg)
        loss_bg = F.relu(0.5 * cross - same_bg + m_bg)
    if stats is not None:
        stats.update(_hinge_stats(cross, same_fg, same_bg, loss_fg, loss_bg))
    return loss_fg.mean(), loss_bg.mean()


def _hinge_stats(
    cross: torch.Tensor,
    same_fg: torch.Tensor,
    same_bg: torch.Tensor,
    loss_fg: torch.Tensor,
    loss_bg: torch.Tensor,
) -> dict[str, float]:
    """Batch means of the cosine terms and the share of pairs whose hinge is active (> 0)."""
    with torch.no_grad():
        return {
            "cos_fg_bg": float((0.5 * cross).mean()),
            "cos_fg_fg": float(same_fg.mean()),
            "cos_bg_bg": float(same_bg.mean()),
            "fg_active": float((loss_fg > 0).float().mean()),
            "bg_active": float((loss_bg > 0).float().mean()),
        }


def diffusion_terms(
    z_t: torch.Tensor,
    z_t1: torch.Tensor,
    feats_t: torch.Tensor,
    feats_t1: torch.Tensor,
    m_fg: float | None = None,
    m_bg: float | None = None,
    form: str = "paper",
    weighted_mean: bool = True,
    l2_normalize: bool = True,
    upsampling: str = "bilinear",
    border_cells: int = 0,
    valid_t: torch.Tensor | None = None,
    valid_t1: torch.Tensor | None = None,
    stats: dict[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted semantic-diffusion terms of a pair of frames from logits (Eq. 2-4).

    Pools each frame's features with its ``sigmoid(z)`` (:func:`pool_fg_bg`) and compares the
    pools (:func:`semantic_diffusion`).

    Args:
        z_t: (B, 1, H, W) logits of frame t.
        z_t1: (B, 1, H, W) logits of frame t+1 (or of a paired frame).
        feats_t: (B, C, h, w) frozen features of frame t.
        feats_t1: (B, C, h, w) frozen features of frame t+1.
        m_fg: Foreground margin; None uses the form's default.
        m_bg: Background margin; None uses the form's default.
        form: ``"paper"`` or ``"official"`` (see :func:`semantic_diffusion`).
        weighted_mean: Pool with the mass-normalised mean (see :func:`pool_fg_bg`).
        l2_normalize: L2-normalise feature pixels before pooling (official code).
        upsampling: Feature upsampling of the pooling (see :func:`pool_fg_bg`).
        border_cells: outermost rings of feature cells left out of both pools.
        valid_t: optional (B, 1, H, W) field of view of frame t (pools only inside it).
        valid_t1: the same for frame t+1.
        stats: optional dict for the hinge diagnostics (see :func:`semantic_diffusion`).

    Returns:
        ``(L_fg, L_bg)``, scalars (mean over the batch).
    """
    check_same("z_t", z_t, z_t1=z_t1)
    check_feats("feats_t", feats_t)
    check_feats("feats_t1", feats_t1)
    if feats_t.shape != feats_t1.shape:
        raise InputError(
            f"feats_t1 has shape {tuple(feats_t1.shape)} but feats_t has {tuple(feats_t.shape)}."
        )
    pool = {"weighted_mean": weighted_mean, "l2_normalize": l2_normalize, "upsampling": upsampling}
    grid = tuple(feats_t.shape[-2:])
    w_t = cell_weights(grid, border_cells, valid_t)
    w_t1 = cell_weights(grid, border_cells, valid_t1)
    fg_t, bg_t = pool_fg_bg(torch.sigmoid(z_t), feats_t, **pool, weights=w_t)
    fg_t1, bg_t1 = pool_fg_bg(torch.sigmoid(z_t1), feats_t1, **pool, weights=w_t1)
    return semantic_diffusion(fg_t, bg_t, fg_t1, bg_t1, m_fg, m_bg, form, stats)


# --------------------------------------------------------------------------------------------
# Module wrappers
# --------------------------------------------------------------------------------------------


def _pair(name: str, value: Sequence[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        first, second = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be two numbers (fg, bg), got {value!r}.") from exc
    return first, second


class AnchorLoss(nn.Module):
    """Anchor loss on logits (Eq. 1); a wrapper of :func:`anchor_loss`."""

    def __init__(self, form: str = "log", w_pos: float = 1.5, w_neg: float = 1.0) -> None:
        """Builds the loss.

        Args:
            form: ``"log"`` (official code, default) or ``"paper"`` (Eq. 1).
            w_pos: Positive weight of the log form.
            w_neg: Negative weight of the log form.
        """
        super().__init__()
        if form not in ANCHOR_FORMS:
            raise InputError(f"unknown anchor loss form '{form}'; use 'log' or 'paper'.")
        self.form = form
        self.w_pos = float(w_pos)
        self.w_neg = float(w_neg)

    def forward(self, z: torch.Tensor, a_pos: torch.Tensor, a_neg: torch.Tensor) -> torch.Tensor:
        """Computes the loss.

        Args:
            z: (B, 1, H, W) logits.
            a_pos: (B, 1, H, W) positive anchor in [0, 1].
            a_neg: (B, 1, H, W) negative anchor in [0, 1].

        Returns:
            Scalar loss.
        """
        return anchor_loss(z, a_pos, a_neg, self.form, self.w_pos, self.w_neg)

    def extra_repr(self) -> str:
        return f"form={self.form!r}, w_pos={self.w_pos}, w_neg={self.w_neg}"


class SemanticDiffusionLoss(nn.Module):
    """Weighted semantic-diffusion loss ``w_fg * L_fg + w_bg * L_bg`` of a pair of frames.

    A wrapper of :func:`diffusion_terms`; :meth:`parts` gives the unweighted terms.
    """

    def __init__(
        self,
        form: str = "paper",
        margins: Sequence[float] | None = None,
        weights: Sequence[float] = (1.0, 1.0),
        weighted_mean: bool = True,
        l2_normalize: bool = True,
        upsampling: str = "bilinear",
        border_cells: int = 0,
        crf_weight: float = 0.0,
        crf_sigma_rgb: float = 0.1,
        crf_sigma_xy: float = 6.0,
        crf_radius: int = 5,
        crf_downsample: int = 2,
    ) -> None:
        """Builds the loss.

        Args:
            form: ``"paper"`` or ``"official"`` (see :func:`semantic_diffusion`).
            margins: (m_fg, m_bg); None uses the form's defaults (0.2/0.8 or 0.05/0.45).
            weights: (w_fg, w_bg); the official config uses (0.5, 2).
            weighted_mean: Mass-normalised pooling (see :func:`pool_fg_bg`).
            l2_normalize: L2-normalise feature pixels before pooling.
            upsampling: ``"bilinear"`` or ``"nearest"`` (see :func:`pool_fg_bg`).
            border_cells: outermost rings of feature cells left out of both pools.
        """
        super().__init__()
        if upsampling not in UPSAMPLINGS:
            raise InputError(
                f"unknown upsampling '{upsampling}' (valid: {', '.join(UPSAMPLINGS)})"
            )
        pair = _pair("margins", margins)
        self.form = form
        self.m_fg, self.m_bg = _form_margins(form, *(pair or (None, None)))
        self.w_fg, self.w_bg = _pair("weights", weights) or (1.0, 1.0)
        self.weighted_mean = bool(weighted_mean)
        self.l2_normalize = bool(l2_normalize)
        self.upsampling = upsampling
        self.border_cells = int(border_cells)

    def parts(
        self,
        z_t: torch.Tensor,
        z_t1: torch.Tensor,
        feats_t: torch.Tensor,
        feats_t1: torch.Tensor,
        valid_t: torch.Tensor | None = None,
        valid_t1: torch.Tensor | None = None,
        stats: dict[str, float] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Computes the unweighted terms.

        Args:
            z_t: (B, 1, H, W) logits of frame t.
            z_t1: (B, 1, H, W) logits of frame t+1 (or of a paired frame).
            feats_t: (B, C, h, w) frozen features of frame t.
            feats_t1: (B, C, h, w) frozen features of frame t+1.
            valid_t: optional (B, 1, H, W) field of view of frame t.
            valid_t1: optional (B, 1, H, W) field of view of frame t+1.
            stats: optional dict for the hinge diagnostics (see :func:`semantic_diffusion`).

        Returns:
            ``(L_fg, L_bg)``, scalars.
        """
        pool = (self.weighted_mean, self.l2_normalize, self.upsampling, self.border_cells)
        return diffusion_terms(
            z_t,
            z_t1,
            feats_t,
            feats_t1,
            self.m_fg,
            self.m_bg,
            self.form,
            *pool,
            valid_t=valid_t,
            valid_t1=valid_t1,
            stats=stats,
        )

    def forward(self, *args: torch.Tensor | None) -> torch.Tensor:
        """Computes the weighted loss; arguments as :meth:`parts`.

        Returns:
            Scalar ``w_fg * L_fg + w_bg * L_bg``.
        """
        l_fg, l_bg = self.parts(*args)
        return self.w_fg * l_fg + self.w_bg * l_bg

    def extra_repr(self) -> str:
        return (
            f"form={self.form!r}, margins=({self.m_fg}, {self.m_bg}), "
            f"weights=({self.w_fg}, {self.w_bg}), weighted_mean={self.weighted_mean}, "
            f"l2_normalize={self.l2_normalize}, upsampling={self.upsampling!r}, "
            f"border_cells={self.border_cells}"
        )


class AGSDLoss(nn.Module):
    """Full loss (Eq. 5) of a pair of frames: ``L_anc(t) + L_anc(t+1) + w_fg L_fg + w_bg L_bg``,
    plus ``w_crf (L_crf(t) + L_crf(t+1))`` when ``crf_weight > 0`` (:class:`CRFLoss`, which then
    needs the frames' colours).

    Built from an :class:`AnchorLoss` (:attr:`anchor`) and a :class:`SemanticDiffusionLoss`
    (:attr:`diffusion`). Table-1 ablation: ``use_fg=use_bg=False`` (L_anc), ``use_bg=False``
    (+L_fg), ``use_fg=False`` (+L_bg), both True (full); with both off, no features are needed.
    The keyword arguments are the keys of the ``loss:`` section of config/train.yaml, so
    ``AGSDLoss(**config["loss"])`` builds the configured loss.
    """

    def __init__(
        self,
        anchor_form: str = "log",
        w_pos: float = 1.5,
        w_neg: float = 1.0,
        diffusion_form: str = "paper",
        margins: Sequence[float] | None = None,
        weights: Sequence[float] = (1.0, 1.0),
        weighted_mean: bool = True,
        l2_normalize: bool = True,
        use_fg: bool = True,
        use_bg: bool = True,
        upsampling: str = "bilinear",
        border_cells: int = 0,
        crf_weight: float = 0.0,
        crf_sigma_rgb: float = 0.1,
        crf_sigma_xy: float = 6.0,
        crf_radius: int = 5,
        crf_downsample: int = 2,
    ) -> None:
        """Builds the loss.

        Args:
            anchor_form: ``"log"`` (default) or ``"paper"`` (see :class:`AnchorLoss`).
            w_pos: Positive weight of the log anchor form.
            w_neg: Negative weight of the log anchor form.
            diffusion_form: ``"paper"`` (default) or ``"official"``.
            margins: (m_fg, m_bg); None uses the form's defaults.
            weights: (w_fg, w_bg).
            weighted_mean: Mass-normalised pooling.
            l2_normalize: L2-normalise feature pixels before pooling.
            use_fg: Include ``L_fg`` (Table-1 ablation switch).
            use_bg: Include ``L_bg`` (Table-1 ablation switch).
            upsampling: Feature upsampling of the pooling (see :func:`pool_fg_bg`).
            border_cells: outermost rings of feature cells left out of the diffusion pools.
            crf_weight: weight of the local gated-CRF term (0: off).
            crf_sigma_rgb: its colour bandwidth (RGB in [0, 1]).
            crf_sigma_xy: its spatial bandwidth (pixels of the working size).
            crf_radius: its window half side (pixels of the reduced maps).
            crf_downsample: its average-pooling factor.
        """
        super().__init__()
        if not float(crf_weight) >= 0.0:
            raise InputError(f"loss.crf_weight must be 0 (off) or more, got {crf_weight}")
        self.crf_weight = float(crf_weight)
        self.crf = CRFLoss(crf_sigma_rgb, crf_sigma_xy, crf_radius, crf_downsample)
        self.anchor = AnchorLoss(anchor_form, w_pos, w_neg)
        self.diffusion = SemanticDiffusionLoss(
            diffusion_form,
            margins,
            weights,
            weighted_mean,
            l2_normalize,
            upsampling,
            border_cells,
        )
        self.use_fg = bool(use_fg)
        self.use_bg = bool(use_bg)

    @property
    def needs_features(self) -> bool:
        """Whether ``forward`` needs ``feats_t`` / ``feats_t1``."""
        return self.use_fg or self.use_bg

    @property
    def needs_rgb(self) -> bool:
        """Whether ``forward`` needs ``rgb_t`` / ``rgb_t1`` (the CRF term is on)."""
        return self.crf_weight > 0.0

    def forward(
        self,
        z_t: torch.Tensor,
        z_t1: torch.Tensor,
        a_pos_t: torch.Tensor,
        a_neg_t: torch.Tensor,
        a_pos_t1: torch.Tensor,
        a_neg_t1: torch.Tensor,
        feats_t: torch.Tensor | None = None,
        feats_t1: torch.Tensor | None = None,
        valid_t: torch.Tensor | None = None,
        valid_t1: torch.Tensor | None = None,
        rgb_t: torch.Tensor | None = None,
        rgb_t1: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Computes Eq. 5.

        Args:
            z_t: (B, 1, H, W) logits of frame t.
            z_t1: (B, 1, H, W) logits of frame t+1 (or of a paired frame).
            a_pos_t: (B, 1, H, W) positive anchor of frame t.
            a_neg_t: (B, 1, H, W) negative anchor of frame t.
            a_pos_t1: (B, 1, H, W) positive anchor of frame t+1.
            a_neg_t1: (B, 1, H, W) negative anchor of frame t+1.
            feats_t: (B, C, h, w) frozen features of frame t (needed if a diffusion term is on).
            feats_t1: (B, C, h, w) frozen features of frame t+1.
            valid_t: optional (B, 1, H, W) field of view of frame t: the diffusion pools
                stay inside it (the anchors are already 0 outside it).
            valid_t1: the same for frame t+1.
            rgb_t: (B, 3, H, W) colours of frame t in [0, 1] (needed if the CRF term is on).
            rgb_t1: the same for frame t+1.

        Returns:
            ``(total, parts)``: the scalar loss and ``{"anc_t", "anc_t1", "fg", "bg", "crf",
            "total"}`` as floats for logging (``fg``/``bg``/``crf`` unweighted, 0.0 when
            switched off), plus the hinge diagnostics of :data:`HINGE_STATS` when a diffusion
            term is on.

        Raises:
            InputError: Shapes that differ, or features (colours) missing while a diffusion
                (the CRF) term is on.
        """
        check_same("z_t", z_t, z_t1=z_t1, a_pos_t=a_pos_t, a_neg_t=a_neg_t)
        check_same("z_t", z_t, a_pos_t1=a_pos_t1, a_neg_t1=a_neg_t1)
        anc_t = self.anchor(z_t, a_pos_t, a_neg_t)
        anc_t1 = self.anchor(z_t1, a_pos_t1, a_neg_t1)
        total = anc_t + anc_t1
        parts = {"anc_t": float(anc_t.detach()), "anc_t1": float(anc_t1.detach())}
        l_fg = l_bg = None
        if self.needs_features:
            if feats_t is None or feats_t1 is None:
                raise InputError("feats_t and feats_t1 are required when a diffusion term is on.")
            stats: dict[str, float] = {}
            l_fg, l_bg = self.diffusion.parts(
                z_t, z_t1, feats_t, feats_t1, valid_t, valid_t1, stats=stats
            )
            parts.update(stats)
        if self.use_fg:
            total = total + self.diffusion.w_fg * l_fg
        if self.use_bg:
            total = total + self.diffusion.w_bg * l_bg
        parts["fg"] = float(l_fg.detach()) if self.use_fg else 0.0
        parts["bg"] = float(l_bg.detach()) if self.use_bg else 0.0
        parts["crf"] = 0.0
        if self.needs_rgb:
            if rgb_t is None or rgb_t1 is None:
                raise InputError("rgb_t and rgb_t1 are required when the CRF term is on.")
            l_crf = self.crf(z_t, rgb_t, valid_t) + self.crf(z_t1, rgb_t1, valid_t1)
            total = total + self.crf_weight * l_crf
            parts["crf"] = float(l_crf.detach())
        parts["total"] = float(total.detach())
        return total, parts
