"""The segmentation network: a vanilla U-Net (Ronneberger et al., MICCAI 2015) with one output.

The paper trains "a vanilla U-Net"; ``width=64`` is that network (about 31 M parameters), and a
smaller ``width`` (16 by default on CPU) keeps the same topology at 1/16 of the parameters. Convs
are 3x3 with padding 1 (the output has the input's size, unlike the unpadded original), each
followed by BatchNorm and ReLU. ``forward`` has no data-dependent control flow, so the network
traces and exports to ONNX as one static graph.
"""

from __future__ import annotations

import torch
from torch import nn

from instrument_seg.errors import InputError


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BN -> ReLU) x 2; (B, in, H, W) -> (B, out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool then :class:`DoubleConv`; (B, in, H, W) -> (B, out, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """Upsample x2 halving the channels, concatenate the skip, :class:`DoubleConv`.

    ``bilinear=False`` upsamples with a 2x2 stride-2 transposed conv (the original U-Net);
    ``bilinear=True`` with bilinear interpolation followed by a 1x1 conv, which gives the same
    channel counts with fewer parameters and no checkerboard artefacts.
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool) -> None:
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, in_channels // 2, kernel_size=1),
            )
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels // 2 + out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Args: x (B, in, h, w), skip (B, out, 2h, 2w). Returns (B, out, 2h, 2w)."""
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """Vanilla U-Net returning instrument logits.

    Channels go ``width, 2*width, ..., width * 2**depth`` on the way down (64 ... 1024 for the
    paper's ``width=64, depth=4``) and back; a 1x1 conv gives ``out_channels`` logits.

    Attributes:
        depth: Number of 2x downsamplings; input sizes must be multiples of ``2**depth``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        width: int = 64,
        depth: int = 4,
        bilinear: bool = False,
    ) -> None:
        """Builds the network.

        Args:
            in_channels: Input channels (3 for RGB).
            out_channels: Output logit channels (1: instrument vs background).
            width: Channels of the first level; 64 is the paper's U-Net (~31 M parameters).
            depth: Number of downsamplings (4 in the paper).
            bilinear: Bilinear upsampling + 1x1 conv instead of transposed convs.

        Raises:
            InputError: A non-positive argument.
        """
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("width", width),
            ("depth", depth),
        ):
            if int(value) < 1:
                raise InputError(f"UNet {name} must be a positive integer, got {value}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.width = width
        self.depth = depth
        self.bilinear = bilinear
        channels = [width * 2**i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, channels[0])
        self.downs = nn.ModuleList(Down(channels[i], channels[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(channels[i + 1], channels[i], bilinear) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(channels[0], out_channels, kernel_size=1)

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def check_input(self, x: torch.Tensor) -> None:
        """Raises :class:`InputError` unless ``x`` is (B, in_channels, H, W) with H, W multiples
        of ``2**depth``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputError(
                f"UNet expects a (B, {self.in_channels}, H, W) tensor, got {tuple(x.shape)}."
            )
        h, w = int(x.shape[-2]), int(x.shape[-1])
        m = self.multiple
        if h % m or w % m:
            ok_h, ok_w = max(m, round(h / m) * m), max(m, round(w / m) * m)
            raise InputError(
                f"UNet input size {h}x{w} is not a multiple of {m} (depth {self.depth}); "
                f"resize to e.g. {ok_h}x{ok_w}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segments a batch.

        Args:
            x: (B, in_channels, H, W) normalised image, H and W multiples of ``2**depth``.

        Returns:
            (B, out_channels, H, W) logits; ``sigmoid`` gives P(instrument).

        Raises:
            InputError: Wrong channel count or a size that is not a multiple of ``2**depth``
                (checked in eager mode only; tracing and export see a static graph).
        """
        if not exporting():
            self.check_input(x)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.head(y)


def exporting() -> bool:
    """True while TorchScript tracing, ONNX export or torch.compile runs the forward."""
    return (
        torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    )


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
