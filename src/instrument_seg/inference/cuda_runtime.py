"""The few CUDA runtime calls the TensorRT backend needs, through NVIDIA's cuda-python (no torch).

cuda-python (``pip install cuda-python``; its ``cuda.bindings.runtime`` module, ``cuda.cudart``
before 12.6) is NVIDIA's own binding of the CUDA runtime API, the one TensorRT's Python samples
use. Its runtime module links the CUDA runtime statically and needs only the driver, so a GPU
runtime image carries TensorRT, cuda-python and ONNX Runtime, not PyTorch. Take the
cuda-python major version of the CUDA that TensorRT was built for (``tensorrt-cu13``:
``cuda-python`` 13.x, ``tensorrt-cu12``: 12.x).

Every call returns ``(error, *values)``; :func:`call` raises :class:`CudaError` for an error,
naming the call and CUDA's name for the error.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from instrument_seg.errors import InputError

_MODULES = ("cuda.bindings.runtime", "cuda.cudart")  # cuda-python >= 12.6, older


class CudaError(RuntimeError):
    """A CUDA runtime call failed (the message names the call and the error)."""


def import_cudart() -> ModuleType:
    """cuda-python's runtime module.

    Raises:
        InputError: cuda-python is not installed (one sentence saying what to install).
    """
    errors = []
    for name in _MODULES:
        try:
            return importlib.import_module(name)
        except Exception as exc:  # ImportError, or a broken install raising anything
            errors.append(type(exc).__name__)
    raise InputError(
        "the tensorrt backend needs NVIDIA's cuda-python package for GPU memory (pip install "
        f"cuda-python, the major version of your CUDA), which does not import here ({errors[0]})"
    )


def _error_name(cudart: ModuleType, err: Any) -> str:
    try:
        name = cudart.cudaGetErrorName(err)[1]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # an error code the binding cannot name
        return str(err)


def _ok(cudart: ModuleType, err: Any) -> bool:
    return err == cudart.cudaError_t.cudaSuccess or (isinstance(err, int) and int(err) == 0)


def call(cudart: ModuleType, what: str, result: Any) -> Any:
    """The values of a cuda-python call's ``(error, *values)`` result.

    Args:
        cudart: the runtime module.
        what: the call's name, for the message.
        result: what the call returned.

    Returns:
        None, the one value, or a tuple of the values.

    Raises:
        CudaError: the call returned an error.
    """
    err, *values = result if isinstance(result, tuple) else (result,)
    if not _ok(cudart, err):
        raise CudaError(f"CUDA call {what} failed with {_error_name(cudart, err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def parse_device(device: str | None) -> int | None:
    """``cuda`` or None -> None (the current device), ``cuda:N`` -> N.

    Raises:
        InputError: anything else (the tensorrt backend runs on CUDA devices only).
    """
    if device is None or device == "cuda":
        return None
    prefix, _, index = str(device).partition(":")
    if prefix == "cuda" and index.isdigit():
        return int(index)
    raise InputError(
        f"the tensorrt backend runs on CUDA devices only (cuda or cuda:N), not '{device}'"
    )


class CudaRuntime:
    """Devices, streams, device memory and copies, on cuda-python's runtime module.

    Args:
        cudart: the module (default: :func:`import_cudart`).
    """

    def __init__(self, cudart: ModuleType | None = None) -> None:
        self.cudart = cudart if cudart is not None else import_cudart()

    def _call(self, name: str, *args: Any) -> Any:
        return call(self.cudart, name, getattr(self.cudart, name)(*args))

    def device_count(self) -> tuple[int, str | None]:
        """(number of CUDA devices, None) or (0, why none: CUDA's error name)."""
        try:
            return int(self._call("cudaGetDeviceCount")), None
        except CudaError as exc:
            return 0, str(exc).rsplit(" ", 1)[-1]

    def current_device(self) -> int:
        return int(self._call("cudaGetDevice"))

    def set_device(self, index: int) -> None:
        self._call("cudaSetDevice", int(index))

    def device_name(self, index: int) -> str:
        """The GPU's model name, e.g. ``NVIDIA H100 80GB HBM3``."""
        name = self._call("cudaGetDeviceProperties", int(index)).name
        if isinstance(name, bytes):
            name = name.split(b"\0", 1)[0].decode(errors="replace")
        return str(name)

    def capability(self, index: int) -> tuple[int, int]:
        """(major, minor) compute capability."""
        props = self._call("cudaGetDeviceProperties", int(index))
        return int(props.major), int(props.minor)

    def malloc(self, nbytes: int) -> int:
        """A device pointer to ``nbytes`` bytes (at least 1)."""
        return int(self._call("cudaMalloc", max(int(nbytes), 1)))

    def free(self, pointer: int) -> None:
        self._call("cudaFree", int(pointer))

    def stream_create(self) -> Any:
        return self._call("cudaStreamCreate")

    def stream_destroy(self, stream: Any) -> None:
        self._call("cudaStreamDestroy", stream)

    def synchronize(self, stream: Any) -> None:
        self._call("cudaStreamSynchronize", stream)

    def copy_to_device(self, pointer: int, host: np.ndarray, stream: Any) -> None:
        """Queues a copy of the C-contiguous ``host`` array to ``pointer`` on ``stream``."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", int(pointer), host.ctypes.data, host.nbytes, kind, stream)

    def copy_to_host(self, host: np.ndarray, pointer: int, stream: Any) -> None:
        """Queues a copy from ``pointer`` into the C-contiguous ``host`` array on ``stream``
        (valid once the stream is synchronized)."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", host.ctypes.data, int(pointer), host.nbytes, kind, stream)


class DeviceBuffer:
    """Device memory that grows to the largest size asked for and is freed by :meth:`free`.

    Args:
        runtime: the CUDA runtime.
    """

    def __init__(self, runtime: CudaRuntime) -> None:
        self.runtime = runtime
        self.pointer = 0
        self.nbytes = 0

    def reserve(self, nbytes: int) -> int:
        """The device pointer of at least ``nbytes`` bytes (reallocated when larger)."""
        if nbytes > self.nbytes:
            self.free()
            self.pointer = self.runtime.malloc(nbytes)
            self.nbytes = int(nbytes)
        return self.pointer

    def free(self) -> None:
        if self.pointer:
            self.runtime.free(self.pointer)
        self.pointer, self.nbytes = 0, 0
