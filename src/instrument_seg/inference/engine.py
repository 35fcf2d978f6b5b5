"""TensorRT engines: building one from an exported ONNX file, and its JSON sidecar.

A serialized engine only runs on the TensorRT version and GPU model that built it. Next to every
``NAME.engine`` we write ``NAME.engine.json`` naming both, plus the ONNX file it was built from
and that file's SHA-256. :func:`decide_engine` (pure Python, no TensorRT needed) reads the
sidecar and says whether the engine can be reused, must be rebuilt from its ONNX, or cannot be
used at all; :func:`build_engine` does the build with the TensorRT Python API (10.x and 11.x).

Precision: every network is built strongly typed, so the engine computes in the precision of
its ONNX graph. TensorRT 11 removed the weak-typing ``BuilderFlag.FP16``; an FP16 engine is
built from an FP16 ONNX (``instrument-seg export --fp16`` writes one), identically on 10.x and
11.x.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instrument_seg.errors import InputError
from instrument_seg.fileio import write_bytes, write_text
from instrument_seg.inference.contract import ModelContract, sha256_file

SIDECAR_FORMAT = "instrument_seg.engine/1"
SIDECAR_KEYS = ("tensorrt", "gpu", "onnx", "onnx_sha256", "max_batch", "contract")
ACTIONS = ("reuse", "rebuild", "fail")
WORKSPACE_GIB = 2.0
DEFAULT_MAX_BATCH = 8  # engine batch limit of a dynamic-batch ONNX when nothing says otherwise

log = logging.getLogger(__name__)


def sidecar_path(engine: str | Path) -> Path:
    """``NAME.engine`` -> ``NAME.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


@dataclass(frozen=True)
class RuntimeInfo:
    """The TensorRT version and GPU model an engine is (or would be) used with."""

    tensorrt: str
    gpu: str


@dataclass(frozen=True)
class EngineDecision:
    """What to do with an engine file.

    Attributes:
        action: ``reuse``, ``rebuild`` (from ``onnx``) or ``fail``.
        reason: one sentence saying why, naming the files.
        onnx: the ONNX file to rebuild from (``rebuild``), else the sidecar's if known.
    """

    action: str
    reason: str
    onnx: Path | None = None


def read_sidecar(engine: str | Path) -> dict[str, Any] | None:
    """The sidecar of ``engine``, or None when there is none.

    Raises:
        InputError: the sidecar exists but is not valid JSON of the expected format.
    """
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"engine sidecar {path} is not readable JSON ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != SIDECAR_FORMAT:
        raise InputError(f"{path} is not an instrument_seg engine sidecar ({SIDECAR_FORMAT})")
    missing = [k for k in SIDECAR_KEYS if k not in payload]
    if missing:
        raise InputError(f"engine sidecar {path} lacks {', '.join(missing)}")
    return payload


def sidecar_onnx(engine: str | Path, sidecar: Mapping[str, Any]) -> Path:
    """The ONNX file a sidecar names, resolved against the engine's folder if relative."""
    onnx = Path(sidecar["onnx"])
    return onnx if onnx.is_absolute() else Path(engine).parent / onnx


def decide_engine(
    engine: str | Path,
    sidecar: Mapping[str, Any] | None,
    runtime: RuntimeInfo,
    onnx: str | Path | None = None,
) -> EngineDecision:
    """Reuse, rebuild or fail: what loading ``engine`` with ``runtime`` should do.

    Reuse needs the engine file, a sidecar naming this TensorRT version and GPU, and (when the
    ONNX is still there) an ONNX whose SHA-256 is the one the engine was built from. Anything
    else rebuilds from the ONNX, or fails when there is no ONNX to rebuild from.

    Args:
        engine: the engine file (it may not exist yet).
        sidecar: its sidecar (:func:`read_sidecar`), or None.
        runtime: the TensorRT version and GPU in use now.
        onnx: the ONNX the engine must come from (default: the one the sidecar names).
    """
    engine = Path(engine)
    source = Path(onnx) if onnx is not None else None
    if source is None and sidecar is not None:
        source = sidecar_onnx(engine, sidecar)
    have_onnx = source is not None and source.is_file()
    if sidecar is None:
        problem = (
            f"has no sidecar {sidecar_path(engine).name} naming its TensorRT version, GPU and ONNX"
            if engine.is_file()
            else "does not exist"
        )
    elif not engine.is_file():
        problem = "does not exist"
    else:
        built = []
        if sidecar["tensorrt"] != runtime.tensorrt:
            built.append(f"TensorRT {sidecar['tensorrt']} (this is {runtime.tensorrt})")
        if sidecar["gpu"] != runtime.gpu:
            built.append(f"GPU {sidecar['gpu']} (this is {runtime.gpu})")
        if built:
            problem = "was built for " + " and ".join(built)
        elif source is not None and sidecar_onnx(engine, sidecar).resolve() != source.resolve():
            problem = f"was built from {sidecar_onnx(engine, sidecar)}, not {source}"
        elif have_onnx and sha256_file(source) != sidecar["onnx_sha256"]:
            problem = f"was built from an earlier version of {source} (its SHA-256 changed)"
        else:
            return EngineDecision(
                "reuse",
                f"engine {engine} matches TensorRT {runtime.tensorrt} on {runtime.gpu}",
                source,
            )
    if have_onnx:
        return EngineDecision(
            "rebuild", f"engine {engine} {problem}; rebuilding it from {source}", source
        )
    gone = f"its ONNX {source} is gone" if source is not None else "no ONNX is known for it"
    return EngineDecision(
        "fail",
        f"engine {engine} {problem}, and {gone}, so it cannot be rebuilt (run "
        "'instrument-seg export --engine' again)",
        source,
    )


def write_sidecar(engine: str | Path, payload: Mapping[str, Any]) -> Path:
    """Writes ``payload`` (plus the format tag) as the sidecar of ``engine``, atomically."""
    path = sidecar_path(engine)
    text = json.dumps({"format": SIDECAR_FORMAT, **payload}, indent=2) + "\n"
    write_text(path, text)
    return path


def onnx_metadata(onnx: str | Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` as a dict (weights are not loaded)."""
    import onnx as onnx_lib

    try:
        model = onnx_lib.load(str(onnx), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise InputError(f"{onnx} cannot be read as an ONNX model ({type(exc).__name__})") from exc
    return {p.key: p.value for p in model.metadata_props}


def build_engine(
    onnx: str | Path,
    engine: str | Path,
    max_batch: int = 1,
    device_index: int = 0,
    workspace_gib: float = WORKSPACE_GIB,
) -> dict[str, Any]:
    """Builds a TensorRT engine from an exported ONNX file and writes it with its sidecar.

    A symbolic batch dimension gets one optimization profile: batch 1 (also the shape tuned
    for, the latency case) to ``max_batch``. A fixed batch is built as it is.

    Args:
        onnx: ONNX file written by ``instrument-seg export`` (FP32 or FP16 graph).
        engine: where the serialized engine goes (``.engine``); the sidecar goes next to it.
        max_batch: largest batch for a dynamic-batch ONNX.
        device_index: CUDA device to build for.
        workspace_gib: builder workspace limit.

    Returns:
        The sidecar written.

    Raises:
        InputError: TensorRT or CUDA missing, an ONNX TensorRT cannot parse, a failed build.
    """
    from instrument_seg.inference.base import import_tensorrt
    from instrument_seg.inference.cuda_runtime import CudaRuntime

    trt = import_tensorrt()
    onnx, engine = Path(onnx), Path(engine)
    if not onnx.is_file():
        raise InputError(f"ONNX model {onnx} does not exist")
    if max_batch < 1:
        raise InputError(f"max batch must be >= 1, got {max_batch}")
    contract = ModelContract.from_metadata(onnx_metadata(onnx), onnx)
    data = onnx.read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)
    cuda = CudaRuntime()
    cuda.set_device(device_index)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # required for typed FP16 on 10.x, implied on 11.x
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT cannot parse {onnx} ({errors[:300]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    dynamic = shape[0] < 0
    if dynamic:
        profile = builder.create_optimization_profile()
        chw = tuple(int(v) for v in shape[1:])
        profile.set_shape(tensor.name, (1, *chw), (1, *chw), (int(max_batch), *chw))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InputError(f"TensorRT failed to build an engine from {onnx} (see its log above)")
    write_bytes(engine, memoryview(serialized))
    major, minor = cuda.capability(device_index)
    gpu = cuda.device_name(device_index)
    try:
        onnx_ref = os.path.relpath(onnx.resolve(), engine.resolve().parent)
    except ValueError:  # different drives on Windows
        onnx_ref = str(onnx.resolve())
    sidecar = {
        "tensorrt": trt.__version__,
        "gpu": gpu,
        "compute_capability": f"{major}.{minor}",
        "onnx": onnx_ref,
        "onnx_sha256": sha256_file(onnx),
        "precision": contract.precision,
        "dynamic": dynamic,
        "max_batch": int(max_batch) if dynamic else int(shape[0]),
        "input_size": list(contract.input_size),
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "contract": contract.to_metadata(),
    }
    write_sidecar(engine, sidecar)
    log.info("built TensorRT %s engine %s from %s on %s", trt.__version__, engine, onnx, gpu)
    return {"format": SIDECAR_FORMAT, **sidecar}


def ensure_engine(
    engine: str | Path,
    runtime: RuntimeInfo,
    onnx: str | Path | None = None,
    device_index: int = 0,
    max_batch: int | None = None,
) -> EngineDecision:
    """Makes ``engine`` usable with ``runtime``: reuses it, rebuilds it, or raises.

    Args:
        engine: the engine file.
        runtime: TensorRT version and GPU in use.
        onnx: the ONNX it must come from (default: the one its sidecar names).
        device_index: CUDA device for a rebuild.
        max_batch: largest batch of a rebuild (default: the sidecar's, else
            :data:`DEFAULT_MAX_BATCH`; ignored for a fixed-batch ONNX).

    Raises:
        InputError: the decision is ``fail`` (its reason is the message), or a failed build.
    """
    sidecar = read_sidecar(engine)
    decision = decide_engine(engine, sidecar, runtime, onnx)
    if decision.action == "fail":
        raise InputError(decision.reason)
    if decision.action == "rebuild":
        log.warning("%s", decision.reason)
        if max_batch is None:
            max_batch = int(sidecar["max_batch"]) if sidecar else DEFAULT_MAX_BATCH
        build_engine(decision.onnx, engine, max_batch=max_batch, device_index=device_index)
    return decision
