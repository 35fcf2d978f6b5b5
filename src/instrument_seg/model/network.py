"""The segmentation networks: the vanilla U-Net or a pretrained encoder with a light decoder.

``model.encoder: unet`` is the paper's text (:class:`instrument_seg.model.unet.UNet`); any other
encoder (:mod:`instrument_seg.model.encoders`) gets the authors' decoder (their ``model.py``):
per level, nearest upsampling to the skip's resolution, two 3x3 conv + ReLU, concatenation with
the encoder's map; a last block at full resolution; the head is a per-pixel linear layer (a 1x1
conv) on the last block's channels concatenated with the RGB input, one logit.

:func:`build_model` takes the ``model_kwargs`` stored in a checkpoint, so a checkpoint is
rebuilt without reading the encoder's ImageNet weights again (``pretrained=False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instrument_seg.errors import InputError
from instrument_seg.model.encoders import ENCODERS, build_encoder, encoder_info
from instrument_seg.model.unet import UNet, exporting

#: The authors' decoder widths (deepest first).
AUTHORS_DECODER = (64, 32, 16, 16, 8)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class EncoderDecoder(nn.Module):
    """Pretrained encoder + light decoder + linear head on (decoder, RGB) -> instrument logits.

    Attributes:
        encoder_name: the encoder (a name of :data:`instrument_seg.model.encoders.ENCODERS`).
        multiple: input height and width must be multiples of this (the deepest stride).
    """

    in_channels = 3

    def __init__(
        self,
        encoder: str,
        decoder: Sequence[int] = AUTHORS_DECODER,
        pretrained: bool = True,
        weights: str | Path | None = None,
    ) -> None:
        """Builds the network.

        Args:
            encoder: encoder name.
            decoder: one width per decoder block, deepest first; as many as encoder levels.
            pretrained: read the encoder's ImageNet weights (False: to load a checkpoint).
            weights: explicit weights file of the encoder.

        Raises:
            InputError: unknown encoder, wrong number of decoder widths, weights not found.
        """
        super().__init__()
        info = encoder_info(encoder)
        decoder = tuple(int(c) for c in decoder)
        if len(decoder) != len(info.channels) or min(decoder, default=0) < 1:
            raise InputError(
                f"model.decoder needs {len(info.channels)} positive widths for {encoder}, got "
                f"{list(decoder)}"
            )
        self.encoder_name = encoder
        self.decoder_widths = decoder
        self.encoder = build_encoder(encoder, pretrained, weights)
        channels, strides = info.channels, info.strides
        self.multiple = strides[-1]
        self._scales = [strides[k + 1] // strides[k] for k in range(len(strides) - 1)][::-1]
        self._scales.append(strides[0])
        blocks = []
        cin = channels[-1]
        for k, width in enumerate(decoder):
            blocks.append(_block(cin, width))
            skip = channels[-2 - k] if k + 1 < len(channels) else 0
            cin = width + skip
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(decoder[-1] + 3, 1, kernel_size=1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raises :class:`InputError` unless ``x`` is (B, 3, H, W), H and W multiples of
        :attr:`multiple`."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"the network expects a (B, 3, H, W) tensor, got {tuple(x.shape)}")
        h, w = int(x.shape[-2]), int(x.shape[-1])
        m = self.multiple
        if h % m or w % m:
            raise InputError(
                f"input size {h}x{w} is not a multiple of {m} ({self.encoder_name}); resize to "
                f"e.g. {max(m, round(h / m) * m)}x{max(m, round(w / m) * m)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, 1, H, W) logits."""
        if not exporting():
            self.check_input(x)
        features = self.encoder(x)
        y = features[-1]
        for k, block in enumerate(self.blocks):
            scale = self._scales[k]
            if scale > 1:
                y = F.interpolate(y, scale_factor=float(scale), mode="nearest")
            y = block(y)
            skip = features[-2 - k] if k + 1 < len(features) else x
            y = torch.cat([y, skip], dim=1)
        return self.head(y)


def model_kwargs_from_config(model: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments stored in a checkpoint, from the ``model`` config section."""
    encoder = str(model.get("encoder", "unet"))
    if encoder not in ENCODERS:
        raise InputError(f"unknown model.encoder '{encoder}' (valid: {', '.join(ENCODERS)})")
    if encoder == "unet":
        return {
            "width": int(model["width"]),
            "depth": int(model["depth"]),
            "bilinear": bool(model["bilinear"]),
        }
    return {"encoder": encoder, "decoder": [int(c) for c in model["decoder"]]}


def build_model(
    kwargs: Mapping[str, Any], pretrained: bool = False, weights: str | Path | None = None
) -> nn.Module:
    """The network of stored ``model_kwargs`` (no ``encoder`` key: the U-Net, as old runs).

    Args:
        kwargs: :func:`model_kwargs_from_config` output (or a checkpoint's ``model_kwargs``).
        pretrained: read the encoder's ImageNet weights (training); False to load a checkpoint.
        weights: explicit encoder weights file.
    """
    kwargs = dict(kwargs)
    encoder = kwargs.pop("encoder", "unet")
    if encoder == "unet":
        return UNet(**kwargs)
    return EncoderDecoder(encoder, kwargs.get("decoder", AUTHORS_DECODER), pretrained, weights)


def normalization(kwargs: Mapping[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the input normalisation the network's encoder was pretrained with."""
    info = encoder_info(str(kwargs.get("encoder", "unet")))
    return info.mean, info.std
