"""The ``instrument-seg`` command line (also ``python -m instrument_seg``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from instrument_seg.errors import InputError
from instrument_seg.fileio import write_json

if TYPE_CHECKING:
    from instrument_seg.inference import Segmenter


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' is not of the form HxW") from None
    return h, w


def progress_bar(total: int, desc: str, unit: str = "frame") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr)


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    from instrument_seg.inference.base import BACKENDS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: .engine -> tensorrt (else its ONNX on onnxruntime), .onnx -> onnxruntime, "
        "run dir/.pt -> torch",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="experiment YAML overriding the defaults (config/train.yaml); may repeat",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides applied last, e.g. cues.enabled=[color,objectness]",
    )


# --- synth -----------------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> str:
    from instrument_seg.data.synthetic import write_dataset

    out = write_dataset(args.out, args.sequences, args.frames, args.size, args.seed, progress=True)
    return (
        f"synth: wrote {args.sequences} sequence(s) x {args.frames} frame(s) at "
        f"{args.size[0]}x{args.size[1]} with masks to {out}"
    )


# --- cues ------------------------------------------------------------------------------------


def cmd_cues(args: argparse.Namespace) -> str:
    from instrument_seg.config import load_config, working_size
    from instrument_seg.cues.anchors import make_anchors
    from instrument_seg.cues.pipeline import dataset_cues
    from instrument_seg.data import load_dataset
    from instrument_seg.evaluation.cue_scores import evaluate_cues, format_table, threshold_kwargs
    from instrument_seg.evaluation.figures import fig2_panel, spread

    config = load_config(args.config, args.overrides)
    dataset = load_dataset(args.data)
    start = time.perf_counter()
    with progress_bar(len(dataset), "cues") as bar:
        frames = dataset_cues(dataset, config, progress=bar.update)
    seconds = (time.perf_counter() - start) / max(1, len(frames))
    report: dict[str, Any] = {
        "data": str(args.data),
        "layout": dataset.layout,
        "n_frames": len(frames),
        "size": list(working_size(config)),
        "cues": list(config["cues"]["enabled"]),
        "objectness": config["cues"]["objectness"]["method"],
        "threshold": threshold_kwargs(config),
        "seconds_per_frame": seconds,
    }
    has_gt = any(f.gt is not None for f in frames)
    if has_gt:
        report.update(evaluate_cues(frames, config))
        print(format_table(report["combinations"]))
    if args.json:
        write_json(args.json, report)
    if args.figures:
        out = Path(args.figures)
        out.mkdir(parents=True, exist_ok=True)
        for k in spread(len(frames), int(config["figures"]["max_frames"])):
            fc = frames[k]
            a_pos, a_neg = make_anchors(fc.cues, config["cues"]["enabled"])
            fig2_panel(
                out / f"{fc.sequence}_{fc.name}.png",
                fc.image,
                fc.cues,
                a_pos,
                a_neg,
                fc.gt,
                title=f"{fc.sequence} / {fc.name}",
            )
    summary = f"cues: {len(frames)} frame(s) ({dataset.layout}), {1000 * seconds:.0f} ms/frame"
    if has_gt:
        best = max(report["combinations"].items(), key=lambda kv: kv[1]["a_pos"]["iou"]["mean"])
        summary += (
            f"; best a_pos Otsu IoU {100 * best[1]['a_pos']['iou']['mean']:.2f}% ({best[0]})"
        )
    else:
        summary += "; no ground truth, nothing scored"
    return summary


# --- train / predict / evaluate --------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> str:
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


def _eval_split(args: argparse.Namespace, contract, dataset):
    """The frames to score: the run's held-out sequences for a TT run (if present), else all."""
    from instrument_seg.data import Dataset

    split = args.split
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


def _segmenter(args: argparse.Namespace) -> Segmenter:
    from instrument_seg.inference import Segmenter

    return Segmenter.from_path(
        args.model, backend=args.backend, threshold=args.threshold, device=args.device
    )


def cmd_evaluate(args: argparse.Namespace) -> str:
    from instrument_seg.data import load_dataset
    from instrument_seg.evaluation.dataset import evaluate_dataset

    with _segmenter(args) as segmenter:
        dataset = load_dataset(args.data)
        dataset, split = _eval_split(args, segmenter.contract, dataset)
        if not dataset.has_masks:
            raise InputError(f"{dataset.root} has frames without ground-truth masks; cannot score")
        if args.figures and segmenter.contract.config is None:
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
            write_prediction_panels(args.figures, dataset, segmenter.contract.config, segmenter)
    if args.json:
        write_json(args.json, report)
    iou, dice = report["iou"], report["dice"]
    return (
        f"evaluate: {iou['n']} frame(s), IoU {100 * iou['mean']:.2f} ± {100 * iou['std']:.2f} %, "
        f"Dice {100 * dice['mean']:.2f} ± {100 * dice['std']:.2f} % ({threshold['method']}, "
        f"{segmenter.backend})"
    )


def write_prediction_panels(out: Path, dataset, config, predictor) -> None:
    """Fig.-2 panels with the prediction column, for evenly spaced frames."""
    from instrument_seg.cues.anchors import make_anchors
    from instrument_seg.cues.pipeline import dataset_cues
    from instrument_seg.evaluation.figures import fig2_panel, spread

    frames = dataset_cues(dataset, config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for k in spread(len(frames), int(config["figures"]["max_frames"])):
        fc = frames[k]
        a_pos, a_neg = make_anchors(fc.cues, config["cues"]["enabled"])
        prob = predictor.probability(fc.image)
        fig2_panel(
            out / f"{fc.sequence}_{fc.name}.png",
            fc.image,
            fc.cues,
            a_pos,
            a_neg,
            fc.gt,
            prediction=prob,
            title=f"{fc.sequence} / {fc.name}",
        )


def cmd_predict(args: argparse.Namespace) -> str:
    import cv2
    import numpy as np

    from instrument_seg.data import load_dataset
    from instrument_seg.evaluation.dataset import iter_predictions
    from instrument_seg.evaluation.figures import overlay

    with _segmenter(args) as segmenter:
        dataset = load_dataset(args.data)
        out = Path(args.out)
        count = 0
        with progress_bar(len(dataset), "predict") as bar:
            for seq, name, rgb, prob, mask, _gt in iter_predictions(
                segmenter, dataset, segmenter.threshold
            ):
                folders = {k: out / seq / k for k in ("masks", "probs", "overlays")}
                for folder in folders.values():
                    folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folders["masks"] / f"{name}.png"), mask.astype(np.uint8) * 255)
                cv2.imwrite(
                    str(folders["probs"] / f"{name}.png"),
                    np.round(prob * 65535).astype(np.uint16),
                )
                cv2.imwrite(
                    str(folders["overlays"] / f"{name}.png"),
                    cv2.cvtColor(overlay(rgb, mask), cv2.COLOR_RGB2BGR),
                )
                count += 1
                bar.update()
    return (
        f"predict: {count} frame(s) -> masks, probabilities (16-bit) and overlays in {out} "
        f"({segmenter.backend})"
    )


# --- export / bench --------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> str:
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


def cmd_bench(args: argparse.Namespace) -> str:
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


def cmd_ablate(args: argparse.Namespace) -> str:
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


# --- bag -------------------------------------------------------------------------------------


def cmd_bag(args: argparse.Namespace) -> str:
    from instrument_seg.data import bags

    if args.extract is not None:
        dataset = bags.bag_dataset(args.extract, args.image_topic, args.gt_topic)
        index = dataset.sequences[0].index  # the bag's topics, checked before writing
        with progress_bar(len(dataset), "extract") as bar:
            dataset, out = bags.extract_bag(dataset, args.out, progress=bar.update)
        index.close()
        gt = f"with ground truth from {index.gt_topic}" if dataset.has_masks else "no masks"
        return (
            f"bag: extracted {len(dataset)} frame(s) in {len(dataset.sequences)} sequence(s) "
            f"from {index.image_topic} ({gt}) of {args.extract} to {out}"
        )
    from instrument_seg.data import load_dataset

    dataset = load_dataset(args.data)
    with progress_bar(len(dataset), "bag") as bar:
        r = bags.write_bag(
            dataset,
            args.out,
            storage=args.storage,
            rate=args.rate,
            image_topic=args.image_topic or bags.DEFAULT_IMAGE_TOPIC,
            gt_topic=args.gt_topic or bags.DEFAULT_GT_TOPIC,
            frame_id=args.frame_id,
            progress=bar.update,
        )
    sizes = ", ".join(f"{h}x{w}" for h, w in r.sizes)
    gt = f"masks on {r.gt_topic}" if r.with_gt else "no ground truth"
    return (
        f"bag: wrote {r.frames} frame(s) ({r.sequences} sequence(s), {sizes}) on "
        f"{r.image_topic} with {gt} at {r.rate:g} Hz to {r.path} ({r.storage})"
    )


# --- entry point -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
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
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("cues", help="cues and anchors scored against ground truth (Table 2)")
    p.add_argument("--data", required=True, type=Path, help="dataset directory or video file")
    p.add_argument("--json", type=Path, help="write the full report (per frame and mean) here")
    p.add_argument("--figures", type=Path, help="write Fig.-2 style panels (PNG) here")
    add_config_args(p)
    p.set_defaults(func=cmd_cues)

    p = sub.add_parser("train", help="train the U-Net from anchors (+ semantic diffusion)")
    p.add_argument("--data", required=True, type=Path, help="dataset directory or video file")
    p.add_argument("--out", required=True, type=Path, help="run directory to create")
    p.add_argument("--setting", default="ss", help="ss (single stage) or tt (train/test)")
    p.add_argument("--fold", type=int, help="held-out fold for --setting tt (0..3)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_config_args(p)
    p.set_defaults(func=cmd_train)

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
            p.set_defaults(func=cmd_evaluate)
        else:
            p.add_argument("--out", required=True, type=Path, help="output directory")
            p.set_defaults(func=cmd_predict)

    p = sub.add_parser("ablate", help="the paper's Table 1 (losses) or Table 2 (cues) in one go")
    p.add_argument("--data", required=True, type=Path, help="labelled dataset to train and score")
    p.add_argument("--out", required=True, type=Path, help="folder of the variants' runs")
    p.add_argument("--table", required=True, type=int, choices=(1, 2), help="1: losses, 2: cues")
    p.add_argument("--setting", default="ss", help="ss (single stage) or tt (train/test)")
    p.add_argument("--fold", type=int, help="held-out fold for --setting tt")
    add_config_args(p)
    p.set_defaults(func=cmd_ablate)

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
    p.set_defaults(func=cmd_export)

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
    p.set_defaults(func=cmd_bench)

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
    p.set_defaults(func=cmd_bag)
    return parser


def _launched_rank() -> tuple[int, int]:
    """(world size, rank) of a torchrun launch; (1, 0) otherwise (see distributed.py)."""
    try:
        return int(os.environ.get("WORLD_SIZE") or 1), int(os.environ.get("RANK") or 0)
    except ValueError:
        return 1, 0  # distributed.from_env reports the bad value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    world, rank = _launched_rank()  # ddp: under torchrun only rank 0 prints
    try:
        if world > 1 and args.command != "train":
            raise InputError(f"only train runs under torchrun, not {args.command}")
        summary = args.func(args)
    except InputError as exc:
        if rank == 0:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    if rank == 0:
        print(summary)
    return 0
