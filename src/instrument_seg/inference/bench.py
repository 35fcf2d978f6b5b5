"""Latency of a backend against PyTorch eager, measured in the same run on the same frames.

Each repeat times one batch through the :class:`Segmenter` pipeline in three parts (prepare:
resize + normalise; model: the backend alone; finish: resize back + threshold), for the backend
under test and the PyTorch baseline in turn (interleaved, so a change in machine load hits both).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from instrument_seg.errors import InputError
from instrument_seg.inference.contract import sha256_file
from instrument_seg.inference.preprocess import prepare, restore, to_mask
from instrument_seg.inference.segmenter import Segmenter


def find_checkpoint(segmenter: Segmenter) -> Path | None:
    """The checkpoint an exported model came from: next to the model under the name its
    metadata records (or ``checkpoint.pt``), or where an older export's absolute path says,
    with the SHA-256 the metadata records."""
    contract = segmenter.contract
    if contract.checkpoint is None:
        return None
    recorded = Path(contract.checkpoint)
    folder = Path(segmenter.model_path).parent
    candidates = [folder / recorded.name, folder / "checkpoint.pt"]
    if recorded.is_absolute():  # exported before only the file name was recorded
        candidates.insert(0, recorded)
    for candidate in candidates:
        if candidate.is_file() and (
            contract.checkpoint_sha256 is None
            or sha256_file(candidate) == contract.checkpoint_sha256
        ):
            return candidate
    return None


def _timed_parts(segmenter: Segmenter, frames: list[np.ndarray]) -> dict[str, float]:
    runner = segmenter.runner
    t0 = time.perf_counter()
    x = prepare(frames, segmenter.contract)
    t1 = time.perf_counter()
    step = runner.max_batch or len(x)
    probs = np.concatenate([runner.run(x[i : i + step]) for i in range(0, len(x), step)])
    t2 = time.perf_counter()
    for p, f in zip(probs, frames, strict=True):
        to_mask(restore(p, f.shape[:2]), segmenter.threshold)
    t3 = time.perf_counter()
    return {"model": t2 - t1, "end_to_end": t3 - t0}


def _stats(times: list[float], batch: int) -> dict[str, float]:
    arr = np.asarray(times)
    median = float(np.median(arr))
    return {
        "median_ms": 1000 * median,
        "p95_ms": 1000 * float(np.percentile(arr, 95)),
        "frames_per_s": batch / median,
        "n": len(times),
    }


def run_bench(
    model: str | Path,
    backend: str = "auto",
    size: tuple[int, int] | None = None,
    batch: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    torch_model: str | Path | None = None,
    device: str | None = None,
    threads: int = 0,
    progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Times ``model`` with ``backend`` and PyTorch eager on the same generated frames.

    Args:
        model: ``.engine``, ``.onnx``, run directory or ``.pt``.
        backend: as in :meth:`Segmenter.from_path`.
        size: (H, W) of the frames fed in (default: the model's input size).
        batch: frames per call.
        repeats: timed calls per backend (after ``warmup`` untimed ones).
        warmup: untimed calls per backend first.
        torch_model: checkpoint for the baseline (default: found via the model's metadata).
        device: as in :meth:`Segmenter.from_path` (both backends).
        threads: CPU threads for both (0: each library's default).
        progress: called after each repeat.

    Returns:
        ``{"backend", "baseline", "results": {name: {"model": stats, "end_to_end": stats}},
        "ratio": {part: torch median / backend median}, ...}`` with stats of
        ``median_ms``, ``p95_ms``, ``frames_per_s``.

    Raises:
        InputError: bad arguments, an unloadable model, or no checkpoint for the baseline.
    """
    from instrument_seg.inference.export import verification_frames

    if batch < 1 or repeats < 1 or warmup < 0:
        raise InputError(
            f"need batch >= 1, repeats >= 1, warmup >= 0; got {batch}, {repeats}, {warmup}"
        )
    load_before = os.getloadavg()
    subject = Segmenter.from_path(model, backend, device=device, threads=threads)
    baseline = None
    try:
        if subject.backend == "torch" and torch_model is None:
            baseline = subject
        else:
            checkpoint = Path(torch_model) if torch_model is not None else find_checkpoint(subject)
            if checkpoint is None:
                raise InputError(
                    f"no checkpoint for the PyTorch baseline: {model}'s metadata names "
                    f"{subject.contract.checkpoint}, which is not there (with the recorded "
                    "SHA-256); pass --torch-model"
                )
            baseline = Segmenter.from_path(
                checkpoint, "torch", device=device, input_size=subject.input_size, threads=threads
            )
        size = tuple(size or subject.input_size)
        if len(size) != 2 or min(size) < 1:
            raise InputError(f"frame size {size} is not a positive HxW")
        frames = verification_frames(size, batch)
        pairs = [(subject.backend, subject)]
        if baseline is not subject:
            pairs.append(("torch", baseline))
        times: dict[str, dict[str, list[float]]] = {
            n: {"model": [], "end_to_end": []} for n, _ in pairs
        }
        for _ in range(warmup):
            for _, seg in pairs:
                _timed_parts(seg, frames)
        for _ in range(repeats):
            for name, seg in pairs:
                for part, seconds in _timed_parts(seg, frames).items():
                    times[name][part].append(seconds)
            if progress is not None:
                progress()
        results = {
            n: {p: _stats(t, batch) for p, t in parts.items()} for n, parts in times.items()
        }
        base = results["torch"]
        mine = results[subject.backend]
        import torch

        return {
            "model": subject.model_path,
            "backend": subject.backend,
            "device": subject.device,
            "baseline": baseline.model_path,
            "baseline_device": baseline.device,
            "frame_size": list(size),
            "input_size": list(subject.input_size),
            "batch": batch,
            "repeats": repeats,
            "warmup": warmup,
            "threads": threads,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
            "results": results,
            "ratio": {p: base[p]["median_ms"] / mine[p]["median_ms"] for p in mine},
        }
    finally:
        subject.close()
        if baseline is not None:
            baseline.close()


def format_table(report: dict[str, Any]) -> str:
    """A markdown table of a :func:`run_bench` report."""
    lines = [
        "| backend | part | median ms | p95 ms | frames/s | speed vs torch |",
        "|---|---|---|---|---|---|",
    ]
    base = report["results"]["torch"]
    for name, parts in report["results"].items():
        for part, s in parts.items():
            ratio = base[part]["median_ms"] / s["median_ms"]
            lines.append(
                f"| {name} | {part} | {s['median_ms']:.2f} | {s['p95_ms']:.2f} | "
                f"{s['frames_per_s']:.1f} | {ratio:.2f}x |"
            )
    return "\n".join(lines)
