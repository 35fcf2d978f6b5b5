"""One inference API over three backends (TensorRT, ONNX Runtime, PyTorch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrument_seg.errors import InputError
from instrument_seg.imaging import field_of_view
from instrument_seg.inference.base import BACKENDS, Backend, tensorrt_usable
from instrument_seg.inference.contract import ModelContract
from instrument_seg.inference.engine import read_sidecar, sidecar_onnx
from instrument_seg.inference.preprocess import (
    check_image,
    prepare,
    resolve_threshold,
    restore,
    to_mask,
)

ENGINE_SUFFIX = ".engine"
ONNX_SUFFIX = ".onnx"


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ENGINE_SUFFIX:
        return "engine"
    if suffix == ONNX_SUFFIX:
        return "onnx"
    return "checkpoint"


def _engine_fallback_onnx(path: Path) -> Path:
    """The ONNX an engine's sidecar names, for running it with onnxruntime instead."""
    sidecar = read_sidecar(path)
    if sidecar is None:
        raise InputError(
            f"TensorRT is not usable here and engine {path} has no sidecar naming an ONNX "
            "file to run with onnxruntime instead"
        )
    onnx = sidecar_onnx(path, sidecar)
    if not onnx.is_file():
        raise InputError(
            f"TensorRT is not usable here and the ONNX {onnx} named by {path}'s sidecar is gone"
        )
    return onnx


def open_backend(
    path: str | Path,
    backend: str = "auto",
    device: str | None = None,
    input_size: tuple[int, int] | None = None,
    threads: int = 0,
) -> Backend:
    """Loads ``path`` with the requested backend (see :meth:`Segmenter.from_path`).

    Raises:
        InputError: missing file, unknown backend, or a backend that cannot serve the file.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}' (valid: {', '.join(BACKENDS)})")
    kind = _kind(path)
    if (
        kind != "checkpoint"
        and not path.exists()
        and not (kind == "engine" and read_sidecar(path) is not None)
    ):
        raise InputError(f"model file {path} does not exist")
    if backend == "auto":
        if kind == "engine" and not tensorrt_usable():
            path, kind, backend = _engine_fallback_onnx(path), "onnx", "onnxruntime"
        else:
            backend = {"engine": "tensorrt", "onnx": "onnxruntime", "checkpoint": "torch"}[kind]
    if input_size is not None and backend != "torch":
        raise InputError(
            f"input size is fixed by {path} for the {backend} backend; re-export it to change it"
        )
    if backend == "torch":
        if kind != "checkpoint":
            raise InputError(
                f"the torch backend needs a run directory or .pt checkpoint, not {path}"
            )
        from instrument_seg.inference.torch_backend import TorchBackend

        return TorchBackend(path, device, input_size, threads)
    if backend == "onnxruntime":
        if kind != "onnx":
            raise InputError(
                f"the onnxruntime backend needs an .onnx file, not {path} (make one with "
                "'instrument-seg export')"
            )
        from instrument_seg.inference.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, device, threads)
    if kind == "checkpoint":
        raise InputError(
            f"the tensorrt backend needs an .engine or .onnx file, not {path} (make one with "
            "'instrument-seg export --engine')"
        )
    from instrument_seg.inference.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, device)


class Segmenter:
    """Instrument segmentation of RGB frames with any backend, same pre/post-processing.

    Frames of any size are resized to the model's input size, run through the backend, and the
    probabilities resized back; masks come from the threshold chosen at load time.

    Attributes:
        backend: ``tensorrt``, ``onnxruntime`` or ``torch`` (what actually runs).
        model_path: the file loaded (for ``auto`` on an engine without TensorRT: its ONNX).
        input_size: (H, W) the model runs at.
        threshold: keyword arguments of ``imaging.binarize`` used for masks.
        contract: the model's preprocessing contract.
        device: where the backend runs (``cpu``, ``cuda:0``...).
    """

    def __init__(self, runner: Backend, threshold: Any = None) -> None:
        """Wraps a loaded backend; most callers want :meth:`from_path`."""
        self._runner: Backend | None = runner
        self.backend: str = runner.name
        self.model_path: str = str(runner.path)
        self.contract: ModelContract = runner.contract
        self.input_size: tuple[int, int] = tuple(runner.contract.input_size)
        self.threshold: dict[str, Any] = resolve_threshold(threshold, runner.contract.threshold)
        self.device: str = runner.device

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        backend: str = "auto",
        threshold: Any = None,
        device: str | None = None,
        *,
        input_size: tuple[int, int] | None = None,
        threads: int = 0,
    ) -> Segmenter:
        """Loads a model.

        Args:
            path: run directory or ``.pt`` checkpoint (torch), ``.onnx`` (onnxruntime, or
                tensorrt building ``NAME.engine`` next to it), ``.engine`` (tensorrt).
            backend: ``auto`` (``.engine`` -> tensorrt when tensorrt and CUDA import, else the
                ONNX named in its sidecar via onnxruntime; ``.onnx`` -> onnxruntime; run
                directory or ``.pt`` -> torch), ``tensorrt``, ``onnxruntime`` or ``torch``.
            threshold: None (the model's stored default), ``"otsu"``, ``"official"`` or a float
                in (0, 1).
            device: ``cpu``, ``cuda``, ``cuda:N`` or None (CUDA when available).
            input_size: (H, W) for the torch backend instead of the checkpoint's size.
            threads: CPU threads (0: the library's default): onnxruntime's intra-op threads
                for this session; for torch, ``torch.set_num_threads`` (process-wide).

        Raises:
            InputError: one sentence naming the file or value (missing or corrupt model file,
                an ONNX whose input is not (N, 3, H, W), a backend that cannot serve the file,
                a bad threshold or device).
        """
        resolve_threshold(threshold, {})  # a bad threshold fails before anything loads
        runner = open_backend(path, backend, device, input_size, threads)
        try:
            return cls(runner, threshold)
        except Exception:
            runner.close()
            raise

    def _live(self) -> Backend:
        if self._runner is None:
            raise RuntimeError(f"Segmenter for {self.model_path} is closed")
        return self._runner

    @property
    def runner(self) -> Backend:
        """The loaded backend itself (pre/post-processing not included), e.g. for timing."""
        return self._live()

    def _batch(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Each frame's float32 (H, W) P(instrument) and its field of view (None: all)."""
        runner = self.runner
        if len(frames) == 0:
            return []
        x = prepare(frames, self.contract)
        step = runner.max_batch or len(x)
        probs = np.concatenate([runner.run(x[i : i + step]) for i in range(0, len(x), step)])
        out = []
        for p, f in zip(probs, frames, strict=True):
            prob = restore(p, f.shape[:2])
            view = field_of_view(f) if self.contract.field_of_view else None
            if view is not None and view.all():
                view = None
            out.append((prob if view is None else np.where(view, prob, np.float32(0)), view))
        return out

    def probability_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 (H_k, W_k, 3) RGB frames -> float32 (H_k, W_k) P(instrument) each (0 outside
        the field of view when the model masks it).

        Raises:
            InputError: a frame of the wrong type, dtype, channel count or zero size.
        """
        return [prob for prob, _ in self._batch(frames)]

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> float32 (H, W) P(instrument) in [0, 1]."""
        check_image(rgb)
        return self.probability_batch([rgb])[0]

    def predict(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W, 3) RGB -> (uint8 (H, W) mask in {0, 255}, float32 (H, W) probability).

        With a field-of-view model the threshold is found inside the view and the mask is 0
        outside it.

        Raises:
            InputError: not a non-empty uint8 (H, W, 3) array.
        """
        check_image(rgb)
        return self.predict_batch([rgb])[0]

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`predict` for several frames (of any sizes) in as few backend calls as the
        backend's batch limit allows."""
        return [(to_mask(p, self.threshold, view), p) for p, view in self._batch(frames)]

    def close(self) -> None:
        """Frees the model, session or engine; later calls raise ``RuntimeError``."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        h, w = self.input_size
        return f"Segmenter({self.model_path!r}, backend={self.backend!r}, input_size={h}x{w})"
