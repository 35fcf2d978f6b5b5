"""Self-training rounds (``train.rounds``): the previous round's predictions, fused with the
cues, become the next round's anchors.

Round 1 learns from the cue anchors. At the end of round ``r`` the network predicts
``p = sigmoid(z)`` on every training frame (eval mode, no augmentation, 0 outside the field of
view), and round ``r + 1`` keeps training the same network on anchors fused from the *cue*
anchors and ``p`` (``train.round_fusion``):

- ``product``: ``a_pos' = a_pos * p``, ``a_neg' = a_neg * (1 - p)``: ``p`` as one more cue in
  the paper's product fusion, so an anchor stays only where the cues and the network agree;
- ``mean``: ``a_pos' = (a_pos + p) / 2``, ``a_neg' = (a_neg + 1 - p) / 2``: the network's
  confident pixels count as much as the cues, so it can overrule them.

Each round's anchors are written to the run directory (``anchors_round{r}.npz``) so that a
resumed run reads them instead of recomputing them from a network that has trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instrument_seg.errors import InputError
from instrument_seg.fileio import atomic_path
from instrument_seg.training.trainset import to_input

ROUND_FUSIONS = ("product", "mean")


def check_rounds(train: Mapping[str, Any]) -> tuple[int, str]:
    """``(train.rounds, train.round_fusion)``, checked.

    Raises:
        InputError: rounds not a positive integer, an unknown fusion, or rounds > 1 together
            with ground-truth supervision (self-training is for unlabeled frames).
    """
    rounds, fusion = train["rounds"], train["round_fusion"]
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InputError(f"train.rounds must be an integer >= 1, got {rounds!r}")
    if fusion not in ROUND_FUSIONS:
        raise InputError(
            f"unknown train.round_fusion '{fusion}' (valid: {', '.join(ROUND_FUSIONS)})"
        )
    if rounds > 1 and int(train["supervision"]) > 0:
        raise InputError(
            "train.rounds > 1 (self-training) works on unlabeled frames; set "
            f"train.supervision=0 (got {train['supervision']})"
        )
    return rounds, fusion


def fuse(
    a_pos: np.ndarray, a_neg: np.ndarray, p: np.ndarray, fusion: str
) -> tuple[np.ndarray, np.ndarray]:
    """The next round's anchors from the cue anchors and the network's probabilities.

    Args:
        a_pos: float32 (N, H, W) cue positive anchors.
        a_neg: float32 (N, H, W) cue negative anchors.
        p: float32 (N, H, W) probabilities of the previous round (0 outside the view).
        fusion: ``product`` or ``mean`` (see the module docstring).
    """
    if fusion == "product":
        pos, neg = a_pos * p, a_neg * (1.0 - p)
    elif fusion == "mean":
        pos, neg = 0.5 * (a_pos + p), 0.5 * (a_neg + 1.0 - p)
    else:
        raise InputError(f"unknown train.round_fusion '{fusion}'")
    return pos.astype(np.float32), neg.astype(np.float32)


@torch.no_grad()
def predict_frames(
    model: nn.Module,
    frames: np.ndarray,
    norm: tuple[tuple[float, ...], tuple[float, ...]],
    device: torch.device,
    valid: np.ndarray | None = None,
    batch: int = 8,
) -> np.ndarray:
    """float32 (N, H, W) ``sigmoid`` of the network on uint8 (N, H, W, 3) frames, in eval
    mode (the mode is restored), times the field of view when given."""
    was_training = model.training
    model.eval()
    try:
        out = [
            torch.sigmoid(model(to_input(frames[k : k + batch], device, *norm)))[:, 0]
            .cpu()
            .numpy()
            for k in range(0, len(frames), batch)
        ]
    finally:
        model.train(was_training)
    p = np.concatenate(out).astype(np.float32)
    return p if valid is None else p * valid


def anchors_path(out: Path, round_number: int) -> Path:
    """Where round ``round_number``'s (>= 2) anchors are kept in the run directory."""
    return out / f"anchors_round{round_number}.npz"


def save_anchors(path: Path, a_pos: np.ndarray, a_neg: np.ndarray) -> None:
    """Writes a round's anchors (float16, atomically)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, a_pos=a_pos.astype(np.float16), a_neg=a_neg.astype(np.float16))


def load_anchors(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Reads a round's anchors written by :func:`save_anchors`.

    Raises:
        InputError: The file is missing, unreadable or of another shape than ``shape``.
    """
    try:
        with np.load(path) as z:
            a_pos, a_neg = z["a_pos"].astype(np.float32), z["a_neg"].astype(np.float32)
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"cannot read the self-training anchors {path}: {e}") from e
    if a_pos.shape != shape or a_neg.shape != shape:
        raise InputError(f"{path} holds anchors of shape {a_pos.shape}, expected {shape}")
    return a_pos, a_neg
