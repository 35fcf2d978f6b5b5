"""The authors' augmentation, drawn once per frame pair and applied to both frames alike.

From the authors' ``dataset.py`` (docs/method.md §5): a random resized crop (area scale
0.85-1, the frame's aspect kept), a horizontal flip with probability 0.5, and colour jitter
(brightness 0.1, contrast 0.1, saturation 0.01, hue 0.01). The geometric part is one affine
warp per pair applied with :func:`torch.nn.functional.grid_sample` to everything that is
aligned with the frame: the network input, the anchors, the field of view, and the cached
frozen features (the same normalised coordinates on their coarser grid), so the targets move
with the pixels. Colour jitter changes the input only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from instrument_seg.errors import InputError

#: RGB -> luma weights (ITU-R 601), for contrast and saturation.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Augmentation:
    """Settings of the pair-shared augmentation (``train.augment``).

    Attributes:
        enabled: off: every method returns its input.
        crop_scale: (min, max) share of the frame's area kept by the crop.
        flip: probability of a horizontal flip.
        brightness, contrast, saturation, hue: jitter strengths (factors drawn in
            ``1 ± s``; hue: a rotation of ``± hue`` turns of the colour wheel).
    """

    enabled: bool = False
    crop_scale: tuple[float, float] = (0.85, 1.0)
    flip: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.01
    hue: float = 0.01

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Augmentation:
        """From ``train.augment`` (keys: enabled, crop_scale, flip, jitter = [b, c, s, h])."""
        try:
            lo, hi = (float(v) for v in section["crop_scale"])
            b, c, s, h = (float(v) for v in section["jitter"])
            flip = float(section["flip"])
        except (TypeError, ValueError) as exc:
            raise InputError(
                "train.augment needs crop_scale [min, max], flip p and jitter [b, c, s, h]"
            ) from exc
        if not 0 < lo <= hi <= 1 or not 0 <= flip <= 1 or min(b, c, s, h) < 0 or h > 0.5:
            raise InputError(f"train.augment values out of range: {dict(section)}")
        return cls(bool(section["enabled"]), (lo, hi), flip, b, c, s, h)

    def draw(self, rng: np.random.Generator, n: int) -> list[dict[str, float]]:
        """Parameters of ``n`` pairs: scale, shifts, flip and the four jitter factors."""
        out = []
        for _ in range(n):
            side = float(np.sqrt(rng.uniform(*self.crop_scale)))
            out.append(
                {
                    "side": side,
                    "tx": float(rng.uniform(-(1 - side), 1 - side)),
                    "ty": float(rng.uniform(-(1 - side), 1 - side)),
                    "flip": float(rng.random() < self.flip),
                    "brightness": float(rng.uniform(1 - self.brightness, 1 + self.brightness)),
                    "contrast": float(rng.uniform(1 - self.contrast, 1 + self.contrast)),
                    "saturation": float(rng.uniform(1 - self.saturation, 1 + self.saturation)),
                    "hue": float(rng.uniform(-self.hue, self.hue)),
                }
            )
        return out


def jitter(rgb: torch.Tensor, params: Sequence[dict[str, float]]) -> torch.Tensor:
    """Colour jitter of (B, 3, H, W) RGB in [0, 1], one parameter set per sample.

    Brightness scales, contrast blends with the mean luma, saturation with the per-pixel luma,
    and hue rotates the chroma plane of YIQ; the result is clipped to [0, 1].
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3 or len(params) != rgb.shape[0]:
        raise InputError(f"jitter needs (B, 3, H, W) and B parameter sets, got {tuple(rgb.shape)}")
    dev = rgb.device
    col = lambda key: torch.tensor([p[key] for p in params], device=dev).view(-1, 1, 1, 1)  # noqa: E731
    luma_w = torch.tensor(_LUMA, device=dev).view(1, 3, 1, 1)
    x = rgb * col("brightness")
    luma = (x * luma_w).sum(1, keepdim=True)
    x = luma.mean(dim=(2, 3), keepdim=True) + (x - luma.mean(dim=(2, 3), keepdim=True)) * col(
        "contrast"
    )
    luma = (x * luma_w).sum(1, keepdim=True)
    x = luma + (x - luma) * col("saturation")
    angle = 2 * torch.pi * col("hue")[:, 0, 0, 0]
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev
    )
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(params), 3, 3, device=dev)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (B, 3, 3)
    x = torch.einsum("bij,bjhw->bihw", matrix, x)
    return x.clamp(0.0, 1.0)


def warp(
    x: torch.Tensor, params: Sequence[dict[str, float]], mode: str = "bilinear"
) -> torch.Tensor:
    """The crop-and-flip of each sample applied to (B, C, h, w) maps at any resolution.

    Output pixel (u, v) in normalised coordinates shows input point
    ``(side * (±u) + tx, side * v + ty)``: a crop of ``side`` of each dimension, resized back
    to the full grid (the sign flips horizontally).
    """
    if x.ndim != 4 or len(params) != x.shape[0]:
        raise InputError(f"warp needs (B, C, h, w) and B parameter sets, got {tuple(x.shape)}")
    theta = torch.zeros(len(params), 2, 3, device=x.device, dtype=x.dtype)
    for k, p in enumerate(params):
        theta[k, 0, 0] = -p["side"] if p["flip"] else p["side"]
        theta[k, 0, 2] = p["tx"]
        theta[k, 1, 1] = p["side"]
        theta[k, 1, 2] = p["ty"]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
