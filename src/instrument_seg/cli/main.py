"""The ``instrument-seg`` command line (also ``python -m instrument_seg``): parser and entry.

Each sub-command is two functions of a command module: ``check_*`` validates every input and
output path of the command line (:mod:`instrument_seg.cli.paths`), ``cmd_*`` calls the library
and returns the one-line summary. :func:`main` runs the check before the command, so a bad path
costs no work and writes nothing.

    commands_data    synth, bag
    commands_train   cues, train, ablate
    commands_model   evaluate, predict, export, bench
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from instrument_seg.cli.commands_data import check_bag, check_synth, cmd_bag, cmd_synth
from instrument_seg.cli.commands_model import (
    check_bench,
    check_evaluate,
    check_export,
    check_predict,
    cmd_bench,
    cmd_evaluate,
    cmd_export,
    cmd_predict,
)
from instrument_seg.cli.commands_train import (
    check_ablate,
    check_cues,
    check_train,
    cmd_ablate,
    cmd_cues,
    cmd_train,
)
from instrument_seg.cli.common import add_backend_args, add_config_args, parse_size
from instrument_seg.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command; each sets ``func`` (the command) and ``check``."""
    parser = argparse.ArgumentParser(
        prog="instrument-seg",
        description="Unsupervised surgical instrument segmentation (anchors + diffusion).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a procedural endoscopy video dataset with masks")
    p.add_argument("--out", required=True, type=Path, help="output directory (must not exist)")
    p.add_argument("--sequences", type=int, default=2, help="number of sequences")
    p.add_argument("--frames", type=int, default=8, help="frames per sequence")
    p.add_argument("--size", type=parse_size, default=(256, 320), help="frame size HxW")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=cmd_synth, check=check_synth)

    p = sub.add_parser("cues", help="cues and anchors scored against ground truth (Table 2)")
    p.add_argument("--data", required=True, type=Path, help="dataset directory or video file")
    p.add_argument("--json", type=Path, help="write the full report (per frame and mean) here")
    p.add_argument("--figures", type=Path, help="write Fig.-2 style panels (PNG) here")
    add_config_args(p)
    p.set_defaults(func=cmd_cues, check=check_cues)

    p = sub.add_parser("train", help="train the U-Net from anchors (+ semantic diffusion)")
    p.add_argument("--data", required=True, type=Path, help="dataset directory or video file")
    p.add_argument("--out", required=True, type=Path, help="run directory to create")
    p.add_argument("--setting", default="ss", help="ss (single stage) or tt (train/test)")
    p.add_argument("--fold", type=int, help="held-out fold for --setting tt (0..3)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_config_args(p)
    p.set_defaults(func=cmd_train, check=check_train)

    for name, text in (
        ("evaluate", "IoU / Dice of a model on labelled frames (any backend)"),
        ("predict", "write masks, probabilities and overlays (any backend)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--model",
            required=True,
            type=Path,
            help="run directory, .pt checkpoint, .onnx or .engine",
        )
        p.add_argument("--data", required=True, type=Path, help="dataset directory or video")
        add_backend_args(p)
        p.add_argument(
            "--threshold",
            help="otsu, official or a number in (0, 1) (default: the model's stored setting)",
        )
        if name == "evaluate":
            p.add_argument("--json", type=Path, help="write the report (per frame) here")
            p.add_argument("--figures", type=Path, help="write Fig.-2 panels here")
            p.add_argument(
                "--split",
                choices=("auto", "all", "test"),
                default="auto",
                help="frames to score (auto: a TT run's held-out fold, else all)",
            )
            p.set_defaults(func=cmd_evaluate, check=check_evaluate)
        else:
            p.add_argument("--out", required=True, type=Path, help="output directory")
            p.set_defaults(func=cmd_predict, check=check_predict)

    p = sub.add_parser("ablate", help="the paper's Table 1 (losses) or Table 2 (cues) in one go")
    p.add_argument("--data", required=True, type=Path, help="labelled dataset to train and score")
    p.add_argument("--out", required=True, type=Path, help="folder of the variants' runs")
    p.add_argument("--table", required=True, type=int, choices=(1, 2), help="1: losses, 2: cues")
    p.add_argument("--setting", default="ss", help="ss (single stage) or tt (train/test)")
    p.add_argument("--fold", type=int, help="held-out fold for --setting tt")
    add_config_args(p)
    p.set_defaults(func=cmd_ablate, check=check_ablate)

    p = sub.add_parser("export", help="checkpoint -> verified ONNX (+ TensorRT engine)")
    p.add_argument("--model", required=True, type=Path, help="run directory or checkpoint")
    p.add_argument("--onnx", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--engine", type=Path, help="also build a TensorRT engine here")
    p.add_argument("--fp16", action="store_true", help="FP16 engine (writes NAME.fp16.onnx)")
    p.add_argument(
        "--input-size", type=parse_size, help="HxW the model runs at (default: training size)"
    )
    p.add_argument(
        "--dynamic", action="store_true", help="symbolic batch (engine profile 1..--max-batch)"
    )
    p.add_argument("--max-batch", type=int, default=8, help="largest engine batch (--dynamic)")
    p.set_defaults(func=cmd_export, check=check_export)

    p = sub.add_parser("bench", help="latency of a backend vs PyTorch eager, same run")
    p.add_argument("--model", required=True, type=Path, help=".engine, .onnx, run dir or .pt")
    add_backend_args(p)
    p.add_argument("--size", type=parse_size, help="frame size HxW (default: the model's)")
    p.add_argument("--batch", type=int, default=1, help="frames per call")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per backend")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per backend first")
    p.add_argument(
        "--torch-model", type=Path, help="checkpoint for the baseline (default: from metadata)"
    )
    p.add_argument(
        "--threads", type=int, default=0, help="CPU threads for both backends (0: defaults)"
    )
    p.add_argument("--json", type=Path, help="write the full report here")
    p.set_defaults(func=cmd_bench, check=check_bench)

    p = sub.add_parser(
        "bag",
        help="dataset -> rosbag2 (frames rgb8 + masks mono8), or --extract a bag to folders",
        description="Writes a dataset (any layout) as a rosbag2 bag: frames as sensor_msgs/"
        "Image rgb8 and ground-truth masks as mono8 0/255 on their own topic, with identical "
        "header stamps. With --extract, writes a bag's frames (and masks) as the generic "
        "folder layout instead. A bag is itself a dataset for train, cues and evaluate.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="dataset directory, video or bag to write")
    source.add_argument(
        "--extract", type=Path, metavar="BAG", help="bag to write out as DIR/<seq>/images|masks"
    )
    p.add_argument(
        "--out", required=True, type=Path, help="bag directory (--data) or folder (--extract)"
    )
    p.add_argument(
        "--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (--data)"
    )
    p.add_argument(
        "--rate", type=float, default=30.0, help="frames per second of the stamps (--data)"
    )
    p.add_argument(
        "--image-topic",
        help="topic of the frames (default: /camera/image_raw; --extract: the bag's own)",
    )
    p.add_argument(
        "--gt-topic",
        help="topic of the masks (default: /camera/gt_mask; --extract: the bag's own)",
    )
    p.add_argument("--frame-id", default="camera_optical_frame", help="header frame_id (--data)")
    p.add_argument(
        "--compressed",
        nargs="?",
        const="jpeg",
        choices=("jpeg", "png"),
        help="frames as sensor_msgs/CompressedImage (jpeg, the default, or png) on "
        "<image-topic>/compressed, as a recorded camera (--data)",
    )
    p.set_defaults(func=cmd_bag, check=check_bag)
    return parser


def _launched_rank() -> tuple[int, int]:
    """(world size, rank) of a torchrun launch; (1, 0) otherwise (see distributed.py)."""
    try:
        return int(os.environ.get("WORLD_SIZE") or 1), int(os.environ.get("RANK") or 0)
    except ValueError:
        return 1, 0  # distributed.from_env reports the bad value


def main(argv: Sequence[str] | None = None) -> int:
    """Parses, checks every path, runs the command; prints its summary line.

    Returns:
        0 on success; 2 after one ``error: ...`` sentence on stderr for bad input (argparse
        also exits with 2 on a malformed command line).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    world, rank = _launched_rank()  # ddp: under torchrun only rank 0 prints
    try:
        if world > 1 and args.command != "train":
            raise InputError(f"only train runs under torchrun, not {args.command}")
        args.check(args)  # every path, before any work or any write
        summary = args.func(args)
    except InputError as exc:
        if rank == 0:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    if rank == 0:
        print(summary)
    return 0
