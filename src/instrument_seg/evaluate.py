"""Prediction with a trained run and scoring against ground truth (IoU / Dice per frame)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import cv2
import numpy as np
import torch

from instrument_seg.data import Dataset
from instrument_seg.metrics import binarize, dice, iou, summarize
from instrument_seg.pipeline import resize_rgb
from instrument_seg.train import model_from_checkpoint, to_input


class TorchPredictor:
    """P(instrument) maps from a checkpoint with PyTorch, at each frame's own resolution."""

    def __init__(self, checkpoint: Mapping[str, Any], device: str = "cpu") -> None:
        self.model = model_from_checkpoint(checkpoint).to(device)
        self.size = tuple(checkpoint["input_size"])
        self.device = device

    @torch.no_grad()
    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> float32 (H, W) probabilities."""
        x = to_input(resize_rgb(rgb, self.size)[None], self.device)
        p = torch.sigmoid(self.model(x))[0, 0].float().cpu().numpy()
        if p.shape != rgb.shape[:2]:
            p = cv2.resize(p, rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        return np.clip(p, 0.0, 1.0)


def iter_predictions(
    predictor: TorchPredictor, dataset: Dataset, threshold: Mapping[str, Any]
) -> Iterator[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Yields (sequence, frame, rgb, prob, mask, gt) for every frame of ``dataset``."""
    for seq in dataset.sequences:
        for i in range(len(seq)):
            rgb = seq.image(i)
            prob = predictor.probability(rgb)
            yield seq.name, seq.frame_name(i), rgb, prob, binarize(prob, **threshold), seq.mask(i)


def evaluate_dataset(
    predictor: TorchPredictor,
    dataset: Dataset,
    threshold: Mapping[str, Any],
    progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Per-frame IoU / Dice and their mean ± std over the frames with ground truth."""
    frames = []
    for seq, name, _rgb, _prob, mask, gt in iter_predictions(predictor, dataset, threshold):
        if gt is not None:
            frames.append(
                {"sequence": seq, "frame": name, "iou": iou(mask, gt), "dice": dice(mask, gt)}
            )
        if progress is not None:
            progress()
    return {
        "iou": summarize([f["iou"] for f in frames]),
        "dice": summarize([f["dice"] for f in frames]),
        "frames": frames,
    }
