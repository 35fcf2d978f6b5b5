"""Checkpoint -> ONNX (verified against PyTorch) -> optional TensorRT engine.

The ONNX graph takes the normalised float32 (N, 3, H, W) input of the preprocessing contract and
returns P(instrument), float32 (N, 1, H, W) (the sigmoid is part of the graph). The contract
(input size, channel order, mean/std, default threshold, checkpoint SHA-256, training setting
and config) is stored as ONNX metadata, so the file is usable on its own.

Every export verifies itself before anything is written: onnxruntime (CPU) runs the new graph on
generated frames and its probabilities must match PyTorch's within :data:`ONNX_ATOL`, else
:class:`ExportError` and no file. Files are written to a temporary sibling and renamed at the
end, so a reader never sees half a file.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instrument_seg.errors import InputError
from instrument_seg.fileio import write_bytes
from instrument_seg.inference.contract import INPUT_NAME, OUTPUT_NAME, ModelContract
from instrument_seg.inference.engine import DEFAULT_MAX_BATCH
from instrument_seg.inference.preprocess import prepare
from instrument_seg.model.checkpoint import load_checkpoint, model_from_checkpoint

OPSET = 17
ONNX_ATOL = 1e-4  # max |p_onnx - p_torch| allowed for an FP32 export
FP16_ATOL = 2e-2  # the same for the FP16 graph built for TensorRT
VERIFY_FRAMES = 2


class ExportError(InputError):
    """The exported model does not reproduce the checkpoint (nothing was written)."""


class Probabilities(nn.Module):
    """U-Net logits -> P(instrument); optionally computing in FP16 with FP32 input and output.

    Args:
        model: the U-Net (copied for ``half``).
        half: cast the weights and the input to float16 inside the graph.
    """

    def __init__(self, model: nn.Module, half: bool = False) -> None:
        super().__init__()
        self.half_precision = half
        self.model = copy.deepcopy(model).half() if half else model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float32 -> (N, 1, H, W) float32 probabilities."""
        if self.half_precision:
            return torch.sigmoid(self.model(x.half())).float()
        return torch.sigmoid(self.model(x))


@dataclass
class ExportResult:
    """What :func:`export` wrote and how well it matched PyTorch."""

    onnx: Path
    input_size: tuple[int, int]
    dynamic: bool
    max_abs_diff: float
    frames: int
    fp16_onnx: Path | None = None
    fp16_max_abs_diff: float | None = None
    engine: Path | None = None
    engine_max_abs_diff: float | None = None
    sidecar: dict[str, Any] | None = None


def verification_frames(size: tuple[int, int], n: int = VERIFY_FRAMES) -> list[np.ndarray]:
    """Generated endoscopy-like uint8 RGB frames at ``size`` (seeded, always the same)."""
    from instrument_seg.data.synthetic import SynthConfig, render_sequence

    frames, _ = render_sequence(SynthConfig(height=size[0], width=size[1], n_frames=n, seed=7))
    return frames


def onnx_bytes(module: nn.Module, size: tuple[int, int], dynamic: bool, opset: int) -> bytes:
    """Traces ``module`` on a (1, 3, H, W) input to an ONNX graph (batch symbolic if
    ``dynamic``)."""
    dummy = torch.zeros(1, 3, *size)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            module.eval(),
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def with_metadata(data: bytes, contract: ModelContract) -> bytes:
    """Adds the contract to an ONNX model's ``metadata_props``."""
    import onnx

    model = onnx.load_from_string(data)
    del model.metadata_props[:]
    for key, value in contract.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "instrument_seg"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnxruntime_probabilities(data: bytes, x: np.ndarray, dynamic: bool) -> np.ndarray:
    """Runs an ONNX graph (bytes) on the CPU: float32 (N, 3, H, W) -> (N, 1, H, W)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    if dynamic:
        return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    return np.concatenate(
        [session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + 1]})[0] for i in range(len(x))]
    )


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _check_out(path: Path, what: str) -> None:
    if not path.parent.is_dir():
        raise InputError(f"cannot write {what} {path}: directory {path.parent} does not exist")


def export_graph(
    model: nn.Module,
    contract: ModelContract,
    dynamic: bool,
    x: np.ndarray,
    reference: np.ndarray,
    half: bool = False,
    opset: int = OPSET,
) -> tuple[bytes, float]:
    """One verified ONNX graph with metadata, in memory.

    Args:
        model: the U-Net in eval mode.
        contract: stored as metadata (its precision is set from ``half``).
        dynamic: symbolic batch dimension.
        x: float32 (N, 3, H, W) verification input.
        reference: float32 (N, 1, H, W) PyTorch FP32 probabilities on ``x``.
        half: FP16 arithmetic inside the graph (FP32 input and output).
        opset: ONNX opset.

    Returns:
        (serialized model, max |p_onnx - p_torch|).

    Raises:
        ExportError: the difference exceeds :data:`ONNX_ATOL` (:data:`FP16_ATOL` if ``half``).
    """
    data = onnx_bytes(Probabilities(model, half), contract.input_size, dynamic, opset)
    data = with_metadata(data, contract.with_precision("fp16" if half else "fp32"))
    diff = _max_abs_diff(onnxruntime_probabilities(data, x, dynamic), reference)
    atol = FP16_ATOL if half else ONNX_ATOL
    if not diff <= atol:  # also catches NaN
        raise ExportError(
            f"the {'FP16 ' if half else ''}ONNX export of {contract.checkpoint} does not match "
            f"PyTorch: max |p_onnx - p_torch| = {diff:.3g} > {atol:g} on {len(x)} generated "
            "frames, so nothing was written"
        )
    return data, diff


def fp16_path(onnx: Path) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx`` (the FP16 graph TensorRT builds from)."""
    return onnx.with_name(f"{onnx.stem}.fp16{onnx.suffix}")


def export(
    model_path: str | Path,
    onnx_path: str | Path,
    engine_path: str | Path | None = None,
    fp16: bool = False,
    input_size: tuple[int, int] | None = None,
    dynamic: bool = False,
    max_batch: int = DEFAULT_MAX_BATCH,
    opset: int = OPSET,
) -> ExportResult:
    """Exports a checkpoint to a verified ONNX file and optionally builds a TensorRT engine.

    Args:
        model_path: run directory or checkpoint.
        onnx_path: the ONNX file to write.
        engine_path: also build a TensorRT engine here (needs tensorrt and a CUDA GPU).
        fp16: build the engine in FP16 (from ``NAME.fp16.onnx``, written next to the ONNX).
        input_size: (H, W) the exported model runs at (default: the checkpoint's).
        dynamic: symbolic batch dimension (ONNX) and a batch 1..``max_batch`` engine profile.
        max_batch: largest engine batch with ``dynamic``.
        opset: ONNX opset (>= 17).

    Raises:
        InputError: bad checkpoint, size, paths or options; tensorrt/CUDA missing for an engine.
        ExportError: a graph that does not reproduce PyTorch (nothing is written).
    """
    onnx_path = Path(onnx_path)
    engine = Path(engine_path) if engine_path is not None else None
    if opset < 17:
        raise InputError(f"ONNX opset must be >= 17, got {opset}")
    if fp16 and engine is None:
        raise InputError("--fp16 sets the TensorRT engine's precision; add --engine FILE")
    if max_batch < 1:
        raise InputError(f"max batch must be >= 1, got {max_batch}")
    _check_out(onnx_path, "ONNX")
    if engine is not None:
        from instrument_seg.inference.base import import_tensorrt

        _check_out(engine, "engine")
        import_tensorrt()  # fail before writing anything
    payload = load_checkpoint(model_path)
    model = model_from_checkpoint(payload)
    contract = ModelContract.from_checkpoint(payload, input_size)
    model.check_input(torch.zeros(1, model.in_channels, *contract.input_size))
    x = prepare(verification_frames(contract.input_size), contract)
    with torch.no_grad():
        reference = Probabilities(model)(torch.from_numpy(x)).numpy()
    data, diff = export_graph(model, contract, dynamic, x, reference, opset=opset)
    half = None
    if fp16:
        half = export_graph(model, contract, dynamic, x, reference, half=True, opset=opset)
    write_bytes(onnx_path, data)
    result = ExportResult(onnx_path, contract.input_size, dynamic, diff, len(x))
    if half is not None:
        result.fp16_onnx = fp16_path(onnx_path)
        write_bytes(result.fp16_onnx, half[0])
        result.fp16_max_abs_diff = half[1]
    if engine is not None:
        build_and_check_engine(result, engine, x, reference, max_batch if dynamic else 1)
    return result


def build_and_check_engine(
    result: ExportResult, engine: Path, x: np.ndarray, reference: np.ndarray, max_batch: int
) -> None:
    """Builds the engine from the (FP16 or FP32) ONNX and checks it against PyTorch.

    TensorRT may use TF32 for FP32 engines, so the tolerance is ``FP16_ATOL`` for both; a
    failing engine is deleted with its sidecar.
    """
    from instrument_seg.inference.engine import build_engine, sidecar_path
    from instrument_seg.inference.tensorrt_backend import TensorRTBackend

    source = result.fp16_onnx or result.onnx
    result.sidecar = build_engine(source, engine, max_batch=max_batch)
    backend = TensorRTBackend(engine)
    try:
        step = backend.max_batch or len(x)
        prob = np.concatenate([backend.run(x[i : i + step]) for i in range(0, len(x), step)])
    finally:
        backend.close()
    diff = _max_abs_diff(prob, reference[:, 0])
    if not diff <= FP16_ATOL:
        engine.unlink(missing_ok=True)
        sidecar_path(engine).unlink(missing_ok=True)
        raise ExportError(
            f"TensorRT engine {engine} does not match PyTorch: max |p_trt - p_torch| = "
            f"{diff:.3g} > {FP16_ATOL:g}, so it was deleted"
        )
    result.engine, result.engine_max_abs_diff = engine, diff
