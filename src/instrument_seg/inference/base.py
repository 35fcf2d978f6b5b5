"""What a backend is: a network that maps prepared input to probabilities, and nothing else.

Pre- and post-processing live in :mod:`instrument_seg.inference.preprocess`, identical for all
backends; a backend only runs the network.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol

import numpy as np

from instrument_seg.errors import InputError
from instrument_seg.inference.contract import ModelContract

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


class Backend(Protocol):
    """A loaded network.

    Attributes:
        name: ``tensorrt``, ``onnxruntime`` or ``torch``.
        path: the file actually loaded.
        contract: how its input is made (size, normalisation) and its default threshold.
        max_batch: the most frames one :meth:`run` call takes (None: no limit).
        device: where it runs, e.g. ``cpu``, ``cuda:0``.
    """

    name: str
    path: str
    contract: ModelContract
    max_batch: int | None
    device: str

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) normalised input -> float32 (N, H, W) P(instrument)."""
        ...

    def close(self) -> None:
        """Frees the network (model, session or engine)."""
        ...


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, if it imports, cuda-python imports and the CUDA runtime sees a
    GPU (no PyTorch involved: see :mod:`instrument_seg.inference.cuda_runtime`).

    Raises:
        InputError: one sentence saying which of the three is missing.
    """
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or a broken install raising anything
        raise InputError(
            f"the tensorrt backend needs the tensorrt package, which does not import here "
            f"({type(exc).__name__})"
        ) from exc
    from instrument_seg.inference.cuda_runtime import CudaRuntime

    count, why = CudaRuntime().device_count()
    if count == 0:
        raise InputError(
            "the tensorrt backend needs a CUDA GPU, and the CUDA runtime sees none here "
            f"({why or 'no device'})"
        )
    return trt


def tensorrt_usable() -> bool:
    """True when :func:`import_tensorrt` would succeed."""
    try:
        import_tensorrt()
    except InputError:
        return False
    return True
