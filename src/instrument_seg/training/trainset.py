"""The training set: frames, anchors (or ground truth), frozen features and frame pairs.

Everything a training step reads, computed once at working size and held in memory
(:class:`TrainingSet`), and the U-Net's input contract (:func:`to_input`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from instrument_seg.config import working_size
from instrument_seg.cues.pipeline import FrameCues, dataset_anchors, dataset_cues
from instrument_seg.data import Dataset
from instrument_seg.errors import InputError
from instrument_seg.imaging import resize_mask
from instrument_seg.model.contract import NORM_MEAN, NORM_STD
from instrument_seg.training.feature_cache import FeatureCache
from instrument_seg.training.features import VGG16Features

#: ``train.supervision``: % of frames whose anchors are replaced by ground truth.
SUPERVISION_LEVELS = (0, 50, 100)


@dataclass
class TrainingSet:
    """Everything a training step reads, at working size, held in memory.

    Attributes:
        frames: uint8 (N, H, W, 3) RGB frames.
        a_pos: float32 (N, H, W) positive anchors (or ground truth where supervised).
        a_neg: float32 (N, H, W) negative anchors.
        feats: float32 (N, C, h, w) frozen features, or None when no diffusion term is on.
        pairs: int64 (P, 2) frame indices of the training pairs.
        names: (sequence, frame) of each frame.
        valid: float32 (N, H, W) field of view (1 inside), or None when every frame's view
            fills it.
    """

    frames: np.ndarray
    a_pos: np.ndarray
    a_neg: np.ndarray
    feats: torch.Tensor | None
    pairs: np.ndarray
    names: list[tuple[str, str]]
    valid: np.ndarray | None = None


def _supervision(config: Mapping[str, Any], dataset: Dataset) -> int:
    supervision = int(config["train"]["supervision"])
    if supervision not in SUPERVISION_LEVELS:
        raise InputError(
            f"train.supervision must be one of {SUPERVISION_LEVELS} (% of frames), got "
            f"{supervision}"
        )
    if supervision and not dataset.has_masks:
        raise InputError(
            f"train.supervision={supervision} needs ground-truth masks, but {dataset.root} "
            "has frames without them"
        )
    return supervision


def _pairs(dataset: Dataset, config: Mapping[str, Any]) -> np.ndarray:
    """int64 (P, 2) indices into the flat frame list: adjacent frames, or random for stills."""
    if config["data"]["still_images"]:
        pairs = [
            (a.sequence, a.index, b.sequence, b.index)
            for a, b in dataset.random_pairs(np.random.default_rng(int(config["seed"])))
        ]
    else:
        rng = np.random.default_rng(int(config["seed"]))
        adjacent = dataset.adjacent_pairs(rng, warn=lambda text: warnings.warn(text, stacklevel=2))
        pairs = [(a.sequence, a.index, b.sequence, b.index) for a, b in adjacent]
    offsets = np.cumsum([0] + [len(s) for s in dataset.sequences])
    return np.array([(offsets[s] + i, offsets[t] + j) for s, i, t, j in pairs], np.int64)


def _anchors(
    frames: list[FrameCues],
    dataset: Dataset,
    supervision: int,
    enabled: list[str],
    size: tuple[int, int],
    smoothing: int = 1,
    refine: Mapping[str, Any] | None = None,
    still_images: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame ``(a_pos, a_neg)``: the cue anchors (refined per ``refine``, the ``anchors:``
    config section), or the ground truth (resized nearest, so its area is kept) on the
    supervised frames (all at 100 %, even frames of each sequence at 50 %)."""
    index_in_seq = [i for seq in dataset.sequences for i in range(len(seq))]
    cue_anchors = dataset_anchors(frames, enabled, refine, still_images)
    a_pos, a_neg = [], []
    for fc, i, anchors in zip(frames, index_in_seq, cue_anchors, strict=True):
        if supervision == 100 or (supervision == 50 and i % 2 == 0):
            gt = resize_mask(fc.gt, size).astype(np.float32)
            pos, neg = gt, 1.0 - gt
        else:
            pos, neg = smooth_anchor(anchors, smoothing)
        a_pos.append(pos)
        a_neg.append(neg)
    return a_pos, a_neg


def build_training_set(
    dataset: Dataset,
    config: Mapping[str, Any],
    features: VGG16Features | None,
    cache_dir: Path | None = None,
    progress: Callable[[], None] | None = None,
    frame_cues: list[FrameCues] | None = None,
) -> TrainingSet:
    """Cues, anchors (or ground truth), features and pairs of every frame of ``dataset``.

    Args:
        dataset: The training sequences.
        config: Resolved config (``seed``, ``data``, ``cues``, ``features``,
            ``train.supervision``).
        features: The frozen extractor, or None when no diffusion term is on.
        cache_dir: Where features are cached on disk (None: memory only).
        progress: Called once per frame whose cues are done.
        frame_cues: This dataset's cues computed earlier (with every enabled cue and the
            ground truth), e.g. shared by the runs of an ablation.

    Returns:
        The training set.

    Raises:
        InputError: Bad ``train.supervision``, supervision without masks, or ``frame_cues``
            of another length.
    """
    supervision = _supervision(config, dataset)
    pairs = _pairs(dataset, config)
    if frame_cues is None:
        frames = dataset_cues(dataset, config, progress=progress, with_gt=supervision > 0)
    else:
        frames = frame_cues
        if len(frames) != len(dataset):
            raise InputError(f"{len(frames)} precomputed cue sets for {len(dataset)} frames")
    enabled = config["cues"]["enabled"]
    smoothing = int(config["train"]["anchor_smoothing"])
    if smoothing < 1:
        raise InputError(f"train.anchor_smoothing must be 1 (none) or more, got {smoothing}")
    size = working_size(config)
    a_pos, a_neg = _anchors(
        frames,
        dataset,
        supervision,
        enabled,
        size,
        smoothing,
        config.get("anchors"),
        bool(config["data"]["still_images"]),
    )
    feats = None
    if features is not None:
        cache = FeatureCache(features, tuple(config["features"]["size"]), cache_dir)
        feats = torch.stack([cache.get(fc.image) for fc in frames])
    return TrainingSet(
        frames=np.stack([fc.image for fc in frames]),
        a_pos=np.stack(a_pos).astype(np.float32),
        a_neg=np.stack(a_neg).astype(np.float32),
        feats=feats,
        pairs=pairs,
        names=[(fc.sequence, fc.name) for fc in frames],
        valid=_valid(frames, size),
    )


def _valid(frames: list[FrameCues], size: tuple[int, int]) -> np.ndarray | None:
    """float32 (N, H, W) field of view of every frame, or None when none has a border."""
    if all(fc.fov is None for fc in frames):
        return None
    full = np.ones(size, np.float32)
    return np.stack([full if fc.fov is None else fc.fov.astype(np.float32) for fc in frames])


def smooth_anchor(
    anchors: tuple[np.ndarray, np.ndarray], factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """The authors' anchor smoothing: each map shrunk ``factor`` times (area) and enlarged
    back (bilinear); 1 returns the maps unchanged.

    Args:
        anchors: ``(a_pos, a_neg)``, float32 (H, W) each.
        factor: the shrink factor (the authors' code: 4).
    """
    if factor == 1:
        return anchors
    out = []
    for a in anchors:
        h, w = a.shape
        small = cv2.resize(
            a, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA
        )
        out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32))
    return out[0], out[1]


def to_input(
    frames: np.ndarray,
    device: torch.device | str = "cpu",
    mean: tuple[float, ...] = NORM_MEAN,
    std: tuple[float, ...] = NORM_STD,
) -> torch.Tensor:
    """The network's input contract: uint8 RGB frames, normalised.

    Args:
        frames: uint8 (N, H, W, 3) RGB.
        device: Where the tensor goes.
        mean: Per-channel mean (the encoder's pretraining; ImageNet's by default).
        std: Per-channel standard deviation.

    Returns:
        float32 (N, 3, H, W): ``(x / 255 - mean) / std`` per channel.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()
    return normalise(x / 255.0, mean, std)


def normalise(
    rgb: torch.Tensor, mean: tuple[float, ...] = NORM_MEAN, std: tuple[float, ...] = NORM_STD
) -> torch.Tensor:
    """``(rgb - mean) / std`` per channel of float (N, 3, H, W) RGB in [0, 1]: the last step of
    :func:`to_input`, for frames already scaled (and augmented) by the training loop."""
    mean_t = torch.tensor(mean, device=rgb.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - mean_t) / std_t
