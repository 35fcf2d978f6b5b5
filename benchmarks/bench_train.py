"""Training throughput and frozen-feature cost on this machine, at 256x320 and 512x640.

Run: .venv/bin/python benchmarks/bench_train.py [--repeats N] [--widths 16,64]
       [--device cpu|cuda]
Prints medians over repeated steps: VGG16 relu5_3 extraction ms/frame, one training step
(U-Net forward + backward + Adam on a batch of frame pairs, full loss) in frames/s, and which part
dominates a training epoch (features are extracted once per frame, steps repeat).
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numpy as np
import torch

from instrument_seg.data.synthetic import SynthConfig, render_sequence
from instrument_seg.model.unet import UNet
from instrument_seg.training.feature_cache import extract_features
from instrument_seg.training.features import VGG16Features
from instrument_seg.training.losses import AGSDLoss
from instrument_seg.training.trainset import to_input


def timed(fn, repeats: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_step(model, opt, loss_fn, x, a_pos, a_neg, feats, b):
    """One full training step on a fixed batch (first half frames t, second half t+1)."""

    def step() -> None:
        z = model(x)
        loss, _ = loss_fn(
            z[:b], z[b:], a_pos[:b], a_neg[:b], a_pos[b:], a_neg[b:], feats[:b], feats[b:]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--widths", default="16,64")
    parser.add_argument("--batch", type=int, default=2, help="frame pairs per step")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_flush_denormal(True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    vgg = VGG16Features.from_source("imagenet").to(device)
    loss_fn = AGSDLoss()
    b = args.batch
    visits = 10  # each frame visited 10x per run; its features are extracted once
    for h, w in ((256, 320), (512, 640)):
        frames, _ = render_sequence(SynthConfig(height=h, width=w, n_frames=2 * b, seed=0))
        feat_s = timed(partial(extract_features, vgg, frames[0], (h, w)), args.repeats, sync)
        feats = torch.stack([extract_features(vgg, f, (h, w)) for f in frames]).to(device)
        x = to_input(np.stack(frames), device)
        a_pos = torch.rand(2 * b, 1, h, w, device=device) * 0.2
        a_neg = torch.rand(2 * b, 1, h, w, device=device) * 0.2
        print(f"{h}x{w}: VGG16 relu5_3 {1000 * feat_s:.1f} ms/frame ({vgg.source_name})")
        for width in (int(v) for v in args.widths.split(",")):
            model = UNet(width=width).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            step = make_step(model, opt, loss_fn, x, a_pos, a_neg, feats, b)
            step_s = timed(step, args.repeats, sync)
            fps = 2 * b / step_s
            share = feat_s / (feat_s + visits / fps)
            print(
                f"{h}x{w}: U-Net width {width}: step {1000 * step_s:.0f} ms "
                f"({2 * b} frames) = {fps:.2f} frames/s; features are {100 * share:.0f}% of "
                f"the time when each frame is visited {visits}x"
            )


if __name__ == "__main__":
    main()
