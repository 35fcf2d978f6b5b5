"""Helpers of the inference and export tests: tiny real checkpoints, frames, error checks.

Checkpoints need no anchors and no VGG, so they are fast to make.

A width-4, depth-2 U-Net is fitted for a few Adam steps to generated frames and their masks, so
its probabilities span [0, 1] like a trained model's (an untrained one sits near 0.5, where
Otsu masks are fragile), then saved in ``train.py``'s checkpoint format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from instrument_seg.config import load_config
from instrument_seg.data.synthetic import SynthConfig, render_sequence
from instrument_seg.model.checkpoint import checkpoint_payload, model_kwargs
from instrument_seg.model.contract import CHECKPOINT
from instrument_seg.model.unet import UNet
from instrument_seg.training.trainset import to_input

SIZE = (64, 80)


def one_sentence(text: str, *words: str) -> None:
    """Asserts ``text`` is one sentence (one line, no inner full stop) holding every word."""
    assert "\n" not in text and text.replace("e.g. ", "").count(". ") == 0, text
    for word in words:
        assert word in text, text


def frames(n: int = 3, size: tuple[int, int] = SIZE, seed: int = 3) -> list[np.ndarray]:
    """Generated uint8 RGB frames (H, W, 3)."""
    rgb, _ = render_sequence(SynthConfig(height=size[0], width=size[1], n_frames=n, seed=seed))
    return rgb


def write_run(
    out: Path,
    width: int = 4,
    depth: int = 2,
    size: tuple[int, int] = SIZE,
    steps: int = 40,
    scale: int = 1,
) -> Path:
    """Writes ``out/checkpoint.pt`` (and returns ``out``): a briefly fitted tiny U-Net that runs
    at ``scale`` times its training size ``size``."""
    config = load_config(
        [],
        [
            "model.encoder=unet",
            f"model.width={width}",
            f"model.depth={depth}",
            f"data.size=[{size[0]},{size[1]}]",
            f"model.inference_scale={scale}",
        ],
    )
    torch.manual_seed(0)
    model = UNet(**model_kwargs(config))
    rgb, masks = render_sequence(SynthConfig(height=size[0], width=size[1], n_frames=4, seed=1))
    x = to_input(np.stack(rgb))
    y = torch.from_numpy(np.stack(masks) > 0).float()[:, None]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_payload(model, config, step=steps), out / CHECKPOINT)
    return out
