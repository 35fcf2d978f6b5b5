"""A local gated-CRF (Potts) loss: spreads the anchors' signal to the pixels they leave open.

The regularised loss of weakly-supervised segmentation (Tang et al., "On Regularized Losses for
Weakly-supervised CNN Segmentation", ECCV 2018; Obukhov et al., "Gated CRF Loss for Weakly
Supervised Semantic Image Segmentation", 2019): for every pixel ``i`` and every neighbour ``j``
in a square window,

    w_ij [p_i (1 - p_j) + (1 - p_i) p_j],
    w_ij = exp(-|xy_i - xy_j|^2 / 2 s_xy^2 - |rgb_i - rgb_j|^2 / 2 s_rgb^2),

summed over the window and averaged over the pixels (and frames) inside the field of view
("gated": a pair counts only when both pixels are in the view). It costs nothing where
neighbouring pixels that look alike get the same label, so it pulls the unlabelled pixels of a
tool towards the anchors on the same tool and away from the tissue across a colour edge.

:func:`crf_loss` computes it from probabilities at a reduced resolution (``p`` and RGB
average-pooled by ``downsample``), with the window as one :func:`torch.nn.functional.unfold`;
:class:`CRFLoss` holds the hyper-parameters (the ``loss.crf_*`` keys of config/train.yaml).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from instrument_seg.errors import InputError


def _check(p: torch.Tensor, rgb: torch.Tensor, valid: torch.Tensor | None) -> None:
    if p.dim() != 4 or p.shape[1] != 1:
        raise InputError(f"p must be (B, 1, H, W), got {tuple(p.shape)}")
    if rgb.dim() != 4 or rgb.shape[1] != 3 or rgb.shape[0] != p.shape[0]:
        raise InputError(
            f"rgb must be (B, 3, H, W) like p {tuple(p.shape)}, got {tuple(rgb.shape)}"
        )
    if rgb.shape[2:] != p.shape[2:]:
        raise InputError(f"rgb {tuple(rgb.shape)} and p {tuple(p.shape)} differ in size")
    if valid is not None and valid.shape != p.shape:
        raise InputError(f"valid must be shaped like p {tuple(p.shape)}, got {tuple(valid.shape)}")


def crf_kernel(
    rgb: torch.Tensor,
    valid: torch.Tensor | None,
    sigma_rgb: float,
    sigma_xy: float,
    radius: int,
    scale: float = 1.0,
) -> torch.Tensor:
    """The gated pairwise weights of every pixel's window (no gradient flows through them).

    Args:
        rgb: (B, 3, H, W) colours in [0, 1].
        valid: optional (B, 1, H, W) field of view (1 inside).
        sigma_rgb: colour bandwidth (RGB in [0, 1]).
        sigma_xy: spatial bandwidth, in pixels of the full-resolution working size.
        radius: the window's half side, in pixels of ``rgb`` (window ``2 r + 1`` squared).
        scale: how many working-size pixels one pixel of ``rgb`` spans (the downsampling).

    Returns:
        (B, K, H * W) weights, K = (2 r + 1)^2 offsets (the centre's weight is 0); pairs with
        a pixel outside the image or the view weigh 0.
    """
    b, _, h, w = rgb.shape
    k = 2 * radius + 1
    with torch.no_grad():
        cols = F.unfold(rgb, k, padding=radius).view(b, 3, k * k, h * w)
        d_rgb = (cols - rgb.view(b, 3, 1, h * w)).pow(2).sum(1)  # (B, K, HW)
        dy, dx = torch.meshgrid(
            torch.arange(-radius, radius + 1, device=rgb.device, dtype=rgb.dtype),
            torch.arange(-radius, radius + 1, device=rgb.device, dtype=rgb.dtype),
            indexing="ij",
        )
        d_xy = ((dy**2 + dx**2) * scale**2).reshape(1, k * k, 1)
        weight = torch.exp(-d_xy / (2 * sigma_xy**2) - d_rgb / (2 * sigma_rgb**2))
        weight[:, (k * k) // 2] = 0.0  # the pixel itself
        inside = torch.ones_like(rgb[:, :1]) if valid is None else valid
        gate = F.unfold(inside, k, padding=radius)  # 0 outside the image (zero padding)
        weight = weight * gate * inside.reshape(b, 1, h * w)
    return weight


def crf_loss(
    p: torch.Tensor,
    rgb: torch.Tensor,
    valid: torch.Tensor | None = None,
    sigma_rgb: float = 0.1,
    sigma_xy: float = 6.0,
    radius: int = 5,
    downsample: int = 2,
) -> torch.Tensor:
    """The local gated-CRF (Potts) loss of a batch of probability maps.

    Args:
        p: (B, 1, H, W) foreground probabilities (sigmoid of the logits).
        rgb: (B, 3, H, W) the frames' colours in [0, 1] (not normalised).
        valid: optional (B, 1, H, W) field of view (1 inside); pairs leaving it do not count,
            and the mean is over the pixels inside it.
        sigma_rgb: colour bandwidth.
        sigma_xy: spatial bandwidth in pixels of (H, W).
        radius: window half side in pixels of the reduced maps.
        downsample: ``p``, ``rgb`` and ``valid`` are average-pooled by this factor first (1:
            none).

    Returns:
        Scalar: the window sums of ``w_ij [p_i (1 - p_j) + (1 - p_i) p_j]`` averaged over the
        pixels in the view.

    Raises:
        InputError: Bad shapes or hyper-parameters.
    """
    _check(p, rgb, valid)
    if sigma_rgb <= 0 or sigma_xy <= 0 or radius < 1 or downsample < 1:
        raise InputError(
            "crf loss needs sigma_rgb > 0, sigma_xy > 0, radius >= 1 and downsample >= 1, got "
            f"{sigma_rgb}, {sigma_xy}, {radius}, {downsample}"
        )
    if downsample > 1:
        p = F.avg_pool2d(p, downsample, ceil_mode=True)
        rgb = F.avg_pool2d(rgb, downsample, ceil_mode=True)
        if valid is not None:  # a reduced pixel is in the view when all of it is
            valid = (F.avg_pool2d(valid.float(), downsample, ceil_mode=True) > 0.999).float()
    b, _, h, w = p.shape
    weight = crf_kernel(rgb, valid, sigma_rgb, sigma_xy, radius, float(downsample))
    k = 2 * radius + 1
    pj = F.unfold(p, k, padding=radius)  # (B, K, HW)
    pi = p.reshape(b, 1, h * w)
    disagree = pi * (1.0 - pj) + (1.0 - pi) * pj
    total = (weight * disagree).sum()
    pixels = float(b * h * w) if valid is None else valid.sum().clamp_min(1.0)
    return total / pixels


class CRFLoss(nn.Module):
    """The local gated-CRF loss on logits; a wrapper of :func:`crf_loss`."""

    def __init__(
        self,
        sigma_rgb: float = 0.1,
        sigma_xy: float = 6.0,
        radius: int = 5,
        downsample: int = 2,
    ) -> None:
        """Builds the loss.

        Args:
            sigma_rgb: colour bandwidth (RGB in [0, 1]).
            sigma_xy: spatial bandwidth in pixels of the working size.
            radius: window half side in pixels of the reduced maps.
            downsample: average-pooling factor before the window.
        """
        super().__init__()
        if sigma_rgb <= 0 or sigma_xy <= 0 or int(radius) < 1 or int(downsample) < 1:
            raise InputError(
                "loss.crf_sigma_rgb and loss.crf_sigma_xy must be > 0, loss.crf_radius and "
                f"loss.crf_downsample >= 1, got {sigma_rgb}, {sigma_xy}, {radius}, {downsample}"
            )
        self.sigma_rgb = float(sigma_rgb)
        self.sigma_xy = float(sigma_xy)
        self.radius = int(radius)
        self.downsample = int(downsample)

    def forward(
        self, z: torch.Tensor, rgb: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Computes the loss.

        Args:
            z: (B, 1, H, W) logits.
            rgb: (B, 3, H, W) colours in [0, 1].
            valid: optional (B, 1, H, W) field of view.

        Returns:
            Scalar loss.
        """
        return crf_loss(
            torch.sigmoid(z),
            rgb,
            valid,
            self.sigma_rgb,
            self.sigma_xy,
            self.radius,
            self.downsample,
        )

    def extra_repr(self) -> str:
        return (
            f"sigma_rgb={self.sigma_rgb}, sigma_xy={self.sigma_xy}, radius={self.radius}, "
            f"downsample={self.downsample}"
        )
