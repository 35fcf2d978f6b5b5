"""``evaluate``, ``predict``, ``export`` and ``bench``: a trained model on any backend.

Each command has a ``check_*`` function, run by ``main`` before the command itself, that
validates every path of the command line (see :mod:`instrument_seg.cli.paths`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from instrument_seg.cli.common import progress_bar
from instrument_seg.cli.paths import input_path, nearest_existing, output_dir, output_file
from instrument_seg.errors import InputError
from instrument_seg.fileio import write_json

if TYPE_CHECKING:
    from instrument_seg.data import Dataset
    from instrument_seg.inference import Segmenter
    from instrument_seg.inference.contract import ModelContract


def _segmenter(args: argparse.Namespace) -> Segmenter:
    from instrument_seg.inference import Segmenter

    return Segmenter.from_path(
        args.model, backend=args.backend, threshold=args.threshold, device=args.device
    )


# --- evaluate --------------------------------------------------------------------------------


def check_evaluate(args: argparse.Namespace) -> None:
    """``--model`` and ``--data`` exist; ``--json`` is a writable file; ``--figures`` a
    writable folder."""
    input_path(args.model, "model")
    input_path(args.data, "data path")
    output_file(args.json, "JSON report")
    output_dir(args.figures, "figures folder")


def eval_split(split: str, contract: ModelContract, dataset: Dataset) -> tuple[Dataset, str]:
    """The frames to score: the run's held-out sequences for a TT run (if present), else all.

    Args:
        split: ``auto``, ``all`` or ``test`` (``--split``).
        contract: the model's contract (its ``setting`` and ``test_sequences``).
        dataset: the whole dataset.

    Returns:
        ``(dataset, split)`` with ``split`` resolved to ``all`` or ``test``.
    """
    from instrument_seg.data import Dataset

    if split == "auto":
        split = "test" if contract.setting == "tt" else "all"
    if split == "all":
        return dataset, split
    names = set(contract.test_sequences)
    chosen = [s for s in dataset.sequences if s.name in names]
    if not chosen:
        raise InputError(
            f"none of the run's test sequences ({', '.join(sorted(names)) or 'none'}) is in "
            f"{dataset.root}"
        )
    return Dataset(dataset.root, chosen, dataset.layout), split


def cmd_evaluate(args: argparse.Namespace) -> str:
    """IoU / Dice of the model on labelled frames (+ Fig.-2 panels); returns the summary."""
    from instrument_seg.cues.pipeline import dataset_cues
    from instrument_seg.data import load_dataset
    from instrument_seg.evaluation.dataset import evaluate_dataset
    from instrument_seg.evaluation.figures import write_fig2_panels

    with _segmenter(args) as segmenter:
        dataset = load_dataset(args.data)
        dataset, split = eval_split(args.split, segmenter.contract, dataset)
        if not dataset.has_masks:
            raise InputError(f"{dataset.root} has frames without ground-truth masks; cannot score")
        config = segmenter.contract.config
        if args.figures and config is None:
            raise InputError(f"{args.model} carries no training config, so --figures cannot work")
        threshold = segmenter.threshold
        with progress_bar(len(dataset), "evaluate") as bar:
            report = evaluate_dataset(segmenter, dataset, threshold, progress=bar.update)
        report = {
            "model": segmenter.model_path,
            "backend": segmenter.backend,
            "device": segmenter.device,
            "data": str(args.data),
            "split": split,
            "threshold": threshold,
            **report,
        }
        if args.figures:
            write_fig2_panels(args.figures, dataset_cues(dataset, config), config, segmenter)
    if args.json:
        write_json(args.json, report)
    iou, dice = report["iou"], report["dice"]
    return (
        f"evaluate: {iou['n']} frame(s), IoU {100 * iou['mean']:.2f} ± {100 * iou['std']:.2f} %, "
        f"Dice {100 * dice['mean']:.2f} ± {100 * dice['std']:.2f} % ({threshold['method']}, "
        f"{segmenter.backend})"
    )


# --- predict ---------------------------------------------------------------------------------


def check_predict(args: argparse.Namespace) -> None:
    """``--model`` and ``--data`` exist; ``--out`` is a writable folder."""
    input_path(args.model, "model")
    input_path(args.data, "data path")
    output_dir(args.out, "output directory")


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """A hidden temporary folder to write ``out``'s files into, moved into ``out`` on success.

    The folder is made inside ``out`` when it exists, else inside its nearest existing
    ancestor (the same file system, so files move by renaming); ``out`` and its missing parents
    are created only at the end. On an exception the temporary folder is removed and ``out``
    is left as it was: a bad frame found halfway leaves nothing behind.
    """
    base = nearest_existing(out)
    stage = Path(tempfile.mkdtemp(prefix=".predict-", dir=base))
    try:
        yield stage
        for file in sorted(p for p in stage.rglob("*") if not p.is_dir()):
            target = out / file.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def cmd_predict(args: argparse.Namespace) -> str:
    """Masks, probabilities and overlays of every frame; returns the summary line.

    The files are written into a hidden temporary folder and moved into ``--out`` once every
    frame is done (:func:`staged_output`), so a bad frame leaves nothing behind.
    """
    from instrument_seg.data import load_dataset
    from instrument_seg.evaluation.predictions import write_predictions

    with _segmenter(args) as segmenter:
        dataset = load_dataset(args.data)
        with progress_bar(len(dataset), "predict") as bar, staged_output(args.out) as stage:
            count = write_predictions(
                segmenter, dataset, stage, segmenter.threshold, progress=bar.update
            )
    return (
        f"predict: {count} frame(s) -> masks, probabilities (16-bit) and overlays in {args.out} "
        f"({segmenter.backend})"
    )


# --- export ----------------------------------------------------------------------------------


def check_export(args: argparse.Namespace) -> None:
    """``--model`` exists; ``--onnx`` and ``--engine`` (and with ``--fp16`` NAME.fp16.onnx)
    are writable files in existing folders."""
    input_path(args.model, "model")
    output_file(args.onnx, "ONNX file")
    output_file(args.engine, "engine file")
    if args.fp16:
        from instrument_seg.inference.export import fp16_path

        output_file(fp16_path(args.onnx), "FP16 ONNX file")


def cmd_export(args: argparse.Namespace) -> str:
    """Checkpoint -> verified ONNX (+ TensorRT engine); returns the summary line."""
    from instrument_seg.inference.export import export

    r = export(
        args.model,
        args.onnx,
        engine_path=args.engine,
        fp16=args.fp16,
        input_size=args.input_size,
        dynamic=args.dynamic,
        max_batch=args.max_batch,
    )
    h, w = r.input_size
    batch = "dynamic batch" if r.dynamic else "batch 1"
    summary = (
        f"export: {r.onnx} ({h}x{w}, {batch}), max |p_onnx - p_torch| {r.max_abs_diff:.2g} on "
        f"{r.frames} generated frames"
    )
    if r.fp16_onnx is not None:
        summary += f"; FP16 graph {r.fp16_onnx} ({r.fp16_max_abs_diff:.2g})"
    if r.engine is not None:
        s = r.sidecar
        summary += (
            f"; engine {r.engine} (TensorRT {s['tensorrt']}, {s['precision']}, {s['gpu']}, "
            f"max |p_trt - p_torch| {r.engine_max_abs_diff:.2g})"
        )
    return summary


# --- bench -----------------------------------------------------------------------------------


def check_bench(args: argparse.Namespace) -> None:
    """``--model`` and ``--torch-model`` exist; ``--json`` is a writable file."""
    input_path(args.model, "model")
    input_path(args.torch_model, "baseline model")
    output_file(args.json, "JSON report")


def cmd_bench(args: argparse.Namespace) -> str:
    """Latency of a backend against PyTorch eager; prints the table, returns the summary."""
    from instrument_seg.inference.bench import format_table, run_bench

    with progress_bar(args.repeats, "bench", unit="repeat") as bar:
        report = run_bench(
            args.model,
            args.backend,
            size=args.size,
            batch=args.batch,
            repeats=args.repeats,
            warmup=args.warmup,
            torch_model=args.torch_model,
            device=args.device,
            threads=args.threads,
            progress=bar.update,
        )
    print(format_table(report))
    if args.json:
        write_json(args.json, report)
    mine = report["results"][report["backend"]]["end_to_end"]
    base = report["results"]["torch"]["end_to_end"]
    fh, fw = report["frame_size"]
    ih, iw = report["input_size"]
    return (
        f"bench: {report['backend']} {mine['median_ms']:.1f} ms median end-to-end "
        f"({mine['frames_per_s']:.1f} frames/s), {report['ratio']['end_to_end']:.2f}x PyTorch "
        f"eager ({base['median_ms']:.1f} ms); {fh}x{fw} frames, model {ih}x{iw}, batch "
        f"{report['batch']}, {report['repeats']} repeats on {report['device']} "
        f"(torch threads: {report['torch_threads']}); load average "
        f"{report['load_average']['before'][0]:.2f}"
    )
