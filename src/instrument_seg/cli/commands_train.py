"""``cues``, ``train`` and ``ablate``: the offline method on a dataset (config-driven).

Each command has a ``check_*`` function, run by ``main`` before the command itself, that
validates every path of the command line (see :mod:`instrument_seg.cli.paths`).
"""

from __future__ import annotations

import argparse

from instrument_seg.cli.common import progress_bar
from instrument_seg.cli.paths import (
    input_files,
    input_path,
    output_dir,
    output_file,
    resumable_run,
)
from instrument_seg.fileio import write_json

# --- cues ------------------------------------------------------------------------------------


def check_cues(args: argparse.Namespace) -> None:
    """``--config`` and ``--data`` exist; ``--json`` is a writable file; ``--figures`` a
    writable folder."""
    input_files(args.config, "config file")
    input_path(args.data, "data path")
    output_file(args.json, "JSON report")
    output_dir(args.figures, "figures folder")


def cmd_cues(args: argparse.Namespace) -> str:
    """Cues and anchors of every frame, scored where there is ground truth; the summary."""
    from instrument_seg.config import load_config
    from instrument_seg.data import load_dataset
    from instrument_seg.evaluation.cue_scores import best_combination, cue_report, format_table
    from instrument_seg.evaluation.figures import write_fig2_panels

    config = load_config(args.config, args.overrides)
    dataset = load_dataset(args.data)
    with progress_bar(len(dataset), "cues") as bar:
        frames, report = cue_report(dataset, config, data=str(args.data), progress=bar.update)
    if "combinations" in report:
        print(format_table(report["combinations"]))
    if args.figures:
        write_fig2_panels(args.figures, frames, config)
    if args.json:
        write_json(args.json, report)
    summary = (
        f"cues: {len(frames)} frame(s) ({dataset.layout}), "
        f"{1000 * report['seconds_per_frame']:.0f} ms/frame"
    )
    best = best_combination(report)
    if best is not None:
        summary += (
            f"; best a_pos Otsu IoU {100 * best[1]['a_pos']['iou']['mean']:.2f}% ({best[0]})"
        )
    else:
        summary += "; no ground truth, nothing scored"
    return summary


# --- train -----------------------------------------------------------------------------------


def check_train(args: argparse.Namespace) -> None:
    """``--config`` and ``--data`` exist; ``--out`` is a writable folder, empty unless
    ``--resume``, which needs a run directory holding its checkpoint."""
    input_files(args.config, "config file")
    input_path(args.data, "data path")
    output_dir(
        args.out,
        "run directory",
        empty=not args.resume,
        not_empty_hint="pass --resume to continue it",
    )
    if args.resume:
        resumable_run(args.out)


def cmd_train(args: argparse.Namespace) -> str:
    """Trains (or resumes) a run; returns the summary line."""
    from instrument_seg.data import load_dataset
    from instrument_seg.training.loop import run_config, train

    config = run_config(args.out, args.resume, args.config, args.overrides)
    dataset = load_dataset(args.data)
    s = train(dataset, args.out, config, args.setting, args.fold, resume=args.resume)
    return (
        f"train: {s['steps']} steps on {s['frames']} frames ({s['pairs']} pairs, "
        f"{args.setting.upper()}), loss {s['first_loss']:.4f} -> {s['final_loss']:.4f}, "
        f"{s['frames_per_second']:.1f} frames/s on {s['device']}; run in {s['run']}"
        if s["first_loss"] is not None
        else f"train: already at step {s['steps']}; nothing to do for {s['run']}"
    )


# --- ablate ----------------------------------------------------------------------------------


def check_ablate(args: argparse.Namespace) -> None:
    """``--config`` and ``--data`` exist; ``--out`` is a writable folder (its finished
    variants are reused)."""
    input_files(args.config, "config file")
    input_path(args.data, "data path")
    output_dir(args.out, "ablation folder")


def cmd_ablate(args: argparse.Namespace) -> str:
    """Trains and scores every variant of Table 1 or 2; prints the table, returns the summary."""
    from instrument_seg.config import load_config
    from instrument_seg.data import load_dataset
    from instrument_seg.training.ablation import ablate

    config = load_config(args.config, args.overrides)
    dataset = load_dataset(args.data)
    result = ablate(args.table, dataset, args.out, config, args.setting, args.fold)
    print(result["markdown"])
    best = max(result["rows"].items(), key=lambda kv: kv[1]["iou"]["mean"])
    return (
        f"ablate: table {args.table}, {len(result['rows'])} variants; best {best[0]} "
        f"IoU {100 * best[1]['iou']['mean']:.2f}%; tables in {args.out}"
    )
