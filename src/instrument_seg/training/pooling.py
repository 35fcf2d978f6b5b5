"""Pooling frozen features with a predicted mask (semantic diffusion, docs/method.md §3).

``pool_fg_bg`` forms the foreground and background pools of Eq. 2 with exact bilinear
upsampling of the features (carried out on ``p`` by the transposed interpolation), optionally
restricted by per-cell weights: the endoscope's field of view, and a ring of border cells left
out. The border ring matters: relu5_3 cells at the frame edge see zero padding and, on
laparoscopic video, the black field-of-view edge; they look alike in every frame and unlike the
interior, so "foreground = border" satisfies the diffusion hinges (a shortcut, measured in
docs/results.md). Shape checks shared with :mod:`instrument_seg.training.losses` live here too.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from instrument_seg.errors import InputError

#: Mass below which a weighted-mean pool is treated as empty (avoids 0 / 0).
_EPS = 1e-6


def check_map(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a (B, 1, H, W) tensor, got {shape}.")


def check_same(ref_name: str, ref: torch.Tensor, **others: torch.Tensor) -> None:
    check_map(ref_name, ref)
    for name, x in others.items():
        check_map(name, x)
        if x.shape != ref.shape:
            raise InputError(
                f"{name} has shape {tuple(x.shape)} but {ref_name} has {tuple(ref.shape)}."
            )


def check_feats(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a (B, C, h, w) tensor, got {shape}.")


def l2_normalize_pixels(feats: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Divides every feature pixel by its L2 norm over channels (the official ``featureL2Norm``).

    Args:
        feats: (B, C, h, w) features.
        eps: Added to the squared norm.

    Returns:
        (B, C, h, w) features with unit-norm pixels (zero pixels stay zero).
    """
    check_feats("feats", feats)
    return feats / torch.sqrt(feats.pow(2).sum(dim=1, keepdim=True) + eps)


UPSAMPLINGS = ("bilinear", "nearest")


@functools.lru_cache(maxsize=32)
def _bilinear_matrix(out_len: int, in_len: int) -> torch.Tensor:
    """(out_len, in_len) matrix of 1-D bilinear upsampling (``align_corners=False``)."""
    eye = torch.eye(in_len, dtype=torch.float64).view(1, 1, in_len, in_len)
    up = F.interpolate(eye, size=(out_len, in_len), mode="bilinear", align_corners=False)
    return up[0, 0]


def _pool_weights(p: torch.Tensor, size: tuple[int, int], upsampling: str) -> torch.Tensor:
    """``p`` (B, 1, H, W) carried to the feature grid ``size`` = (h, w), scaled to a mean.

    ``sum_i p_i Up(F)_i = k * sum_c q_c F_c`` with ``k = H W / (h w)`` for the returned ``q``,
    where ``Up`` upsamples the features to the prediction size (bilinear or nearest).
    """
    if tuple(p.shape[-2:]) == size:
        return p
    if p.shape[-2] < size[0] or p.shape[-1] < size[1]:
        return F.interpolate(p, size=size, mode="bilinear", align_corners=False)
    if upsampling == "nearest":
        return F.adaptive_avg_pool2d(p, size)
    a_h = _bilinear_matrix(p.shape[-2], size[0]).to(p.device, p.dtype)
    a_w = _bilinear_matrix(p.shape[-1], size[1]).to(p.device, p.dtype)
    k = p.shape[-2] * p.shape[-1] / (size[0] * size[1])
    return torch.einsum("Hh,bcHW,Ww->bchw", a_h, p, a_w) / k


#: Share of a feature cell inside the field of view for it to count (1 up to rounding).
WHOLE_CELL = 0.999


def cell_weights(
    size: tuple[int, int],
    border_cells: int = 0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Per-cell pooling weights on the feature grid, or None when every cell counts fully.

    Args:
        size: (h, w) of the feature grid.
        border_cells: cells of the outermost ring(s) that get weight 0 (0: none).
        valid: optional (B, 1, H, W) field of view in {0, 1} at prediction size; a cell counts
            only when it lies wholly inside it. (Cells on the view's edge, weighted by their
            share inside, let a mask on the rim of a circular view meet the fg/bg hinges:
            docs/results.md 9.11.)

    Returns:
        (B or 1, 1, h, w) float weights in [0, 1], or None.
    """
    h, w = size
    if border_cells < 0 or 2 * border_cells >= min(h, w):
        raise InputError(
            f"loss.border_cells must be >= 0 and leave cells in a {h}x{w} grid, got {border_cells}"
        )
    weights = None
    if border_cells:
        weights = torch.zeros(1, 1, h, w)
        weights[..., border_cells : h - border_cells, border_cells : w - border_cells] = 1.0
    if valid is not None:
        check_map("valid", valid)
        inside = (F.adaptive_avg_pool2d(valid.float(), (h, w)) >= WHOLE_CELL).float()
        weights = inside if weights is None else inside * weights.to(inside.device)
    return weights


def pool_fg_bg(
    p: torch.Tensor,
    feats: torch.Tensor,
    weighted_mean: bool = True,
    l2_normalize: bool = True,
    upsampling: str = "bilinear",
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pools features with the predicted foreground and background (Eq. 2).

    ``f_fg = sum_i p_i F_i`` and ``f_bg = sum_i (1 - p_i) F_i``, or the same divided by the mass
    (``sum_i p_i``, ``sum_i (1 - p_i)``) when ``weighted_mean`` is set.

    Resolution: the paper upsamples the features to the prediction size; so does this, without
    ever building the upsampled (B, C, H, W) tensor. Upsampling is linear, ``Up(F) = A_h F
    A_w^T`` per channel, so ``sum_i p_i Up(F)_i = sum_c (A_h^T p A_w)_c F_c``: ``p`` is carried
    to the feature grid by the transposed interpolation (two small matrix products), which is
    exact and costs O(C h w) instead of O(C H W) (h w = H W / 256 for VGG16 relu5_3).
    ``upsampling="bilinear"`` (official code) gives every prediction pixel a smoothly varying
    gradient; ``"nearest"`` reduces ``p`` by area averaging (``adaptive_avg_pool2d``), whose
    gradient is constant over each 16 x 16 feature cell and trained visibly blocky masks on real
    frames (docs/results.md). The weighted mean does not depend on the scale of ``q``; the sum
    is ``1 / k`` of the paper's, ``k = H W / (h w)``. If ``p`` is coarser than ``feats``, ``p``
    is upsampled bilinearly instead.

    Note that the cosine similarity used on the pools is scale-invariant, so the sum and the
    weighted mean give the same :func:`semantic_diffusion` value and gradient (up to ``eps``).

    Args:
        p: (B, 1, H, W) foreground probabilities.
        feats: (B, C, h, w) frozen features (e.g. VGG16 relu5_3).
        weighted_mean: Divide by the mass (official code) instead of summing (paper).
        l2_normalize: L2-normalise each feature pixel over channels first (official code).
        upsampling: ``"bilinear"`` or ``"nearest"`` upsampling of the features (see above).
        weights: optional (B or 1, 1, h, w) cell weights (:func:`cell_weights`) multiplying
            both pools' masses: cells of weight 0 are in neither pool.

    Returns:
        ``(f_fg, f_bg)``, each (B, C).
    """
    check_map("p", p)
    check_feats("feats", feats)
    if feats.shape[0] != p.shape[0]:
        raise InputError(
            f"feats has batch size {feats.shape[0]} but p has {p.shape[0]} ({tuple(p.shape)})."
        )
    if upsampling not in UPSAMPLINGS:
        raise InputError(f"unknown upsampling '{upsampling}' (valid: {', '.join(UPSAMPLINGS)})")
    f = l2_normalize_pixels(feats) if l2_normalize else feats
    q = _pool_weights(p, tuple(feats.shape[-2:]), upsampling).to(f.dtype)
    fg, bg = q, 1.0 - q
    if weights is not None:
        weights = weights.to(f.device, f.dtype)
        fg, bg = fg * weights, bg * weights
    f_fg = (fg * f).sum(dim=(2, 3))
    f_bg = (bg * f).sum(dim=(2, 3))
    if weighted_mean:
        f_fg = f_fg / (fg.sum(dim=(2, 3)) + _EPS)
        f_bg = f_bg / (bg.sum(dim=(2, 3)) + _EPS)
    return f_fg, f_bg
