"""ONNX Runtime vs PyTorch eager on this machine, for every network: U-Nets and encoders.

Run: .venv/bin/python benchmarks/bench_inference.py --out DIR [--models unet16,unet64,
       efficientnet_lite0,resnet18,vgg16] [--sizes 256x320,512x640] [--repeats N] [--threads 1]
For each model it writes an UNTRAINED checkpoint (random weights, default config: timing does
not depend on the weights), exports it at each size with ``inference.export`` (verified
against PyTorch like any export), then times it with ``instrument-seg bench``'s code: batch 1,
frames at the model size, warm-up first, onnxruntime and torch interleaved in the same run.
Prints one markdown row per case and the load average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from instrument_seg.config import load_config
from instrument_seg.inference.bench import run_bench
from instrument_seg.inference.export import export
from instrument_seg.model.checkpoint import checkpoint_payload, model_kwargs
from instrument_seg.model.network import build_model
from instrument_seg.model.unet import count_parameters


def _overrides(name: str) -> list[str]:
    if name.startswith("unet"):
        return ["model.encoder=unet", f"model.width={int(name[4:])}"]
    return [f"model.encoder={name}"]


def untrained_checkpoint(path: Path, name: str, size: tuple[int, int]) -> tuple[Path, int]:
    """A checkpoint in the training format holding a randomly initialised network, and its
    parameter count (``unetN``: the U-Net of width N; else an encoder name)."""
    config = load_config([], [*_overrides(name), f"data.size=[{size[0]},{size[1]}]"])
    torch.manual_seed(0)
    model = build_model(model_kwargs(config), pretrained=False).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_payload(model, config), path)
    return path, count_parameters(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="work directory")
    parser.add_argument("--models", default="unet16,unet64,efficientnet_lite0,resnet18,vgg16")
    parser.add_argument("--sizes", default="256x320,512x640")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="0: library defaults")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {args.threads or 'default'}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    print("| network | size | onnxruntime ms (p95) | torch ms (p95) | torch / ort | load |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for h, w in sizes:
            folder = args.out / f"{name}_{h}x{w}"
            ckpt, onnx_path = folder / "checkpoint.pt", folder / "model.onnx"
            _, params = untrained_checkpoint(ckpt, name, (h, w))
            if not onnx_path.is_file():  # an earlier run's export is reused
                # at the named size: a checkpoint alone would export at its inference size
                # (model.inference_scale x the training size)
                export(ckpt, onnx_path, input_size=(h, w))
            r = run_bench(
                onnx_path,
                "onnxruntime",
                repeats=args.repeats,
                warmup=args.warmup,
                threads=args.threads,
                device="cpu",
            )
            ort, pt = (
                r["results"]["onnxruntime"]["end_to_end"],
                r["results"]["torch"]["end_to_end"],
            )
            load = r["load_average"]
            print(
                f"| {name} ({params / 1e6:.1f} M) | {h}x{w} | {ort['median_ms']:.1f} "
                f"({ort['p95_ms']:.1f}) | {pt['median_ms']:.1f} ({pt['p95_ms']:.1f}) | "
                f"{r['ratio']['end_to_end']:.2f}x | {load['before'][0]:.2f} -> "
                f"{load['after'][0]:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
