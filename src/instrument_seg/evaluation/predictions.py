"""A model's predictions on a dataset as image files: masks, probabilities and overlays.

Layout (``instrument-seg predict --out DIR``)::

    DIR/<sequence>/masks/<frame>.png      uint8 (H, W), 0 / 255
    DIR/<sequence>/probs/<frame>.png      uint16 (H, W), round(P(instrument) * 65535)
    DIR/<sequence>/overlays/<frame>.png   the mask blended onto the frame (colour)

at each frame's own resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from instrument_seg.data import Dataset
from instrument_seg.errors import InputError
from instrument_seg.evaluation.dataset import ProbabilityModel, iter_predictions
from instrument_seg.imaging import overlay

KINDS = ("masks", "probs", "overlays")


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise InputError(f"cannot write {path}")


def write_predictions(
    predictor: ProbabilityModel,
    dataset: Dataset,
    out: str | Path,
    threshold: Mapping[str, Any],
    progress: Callable[[], None] | None = None,
) -> int:
    """Predicts every frame of ``dataset`` and writes its mask, probability map and overlay.

    Args:
        predictor: a model whose ``probability(rgb)`` maps uint8 (H, W, 3) RGB to float32
            (H, W) P(instrument).
        dataset: the frames to predict.
        out: output folder (created with its parents; existing files are overwritten).
        threshold: keyword arguments of ``imaging.binarize`` giving the bool (H, W) mask.
        progress: called once per frame written.

    Returns:
        The number of frames written.

    Raises:
        InputError: an image file cannot be written.
    """
    out = Path(out)
    count = 0
    for seq, name, rgb, prob, mask, _gt in iter_predictions(predictor, dataset, threshold):
        folders = {kind: out / seq / kind for kind in KINDS}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        _imwrite(folders["masks"] / f"{name}.png", mask.astype(np.uint8) * 255)
        _imwrite(folders["probs"] / f"{name}.png", np.round(prob * 65535).astype(np.uint16))
        _imwrite(
            folders["overlays"] / f"{name}.png",
            cv2.cvtColor(overlay(rgb, mask), cv2.COLOR_RGB2BGR),
        )
        count += 1
        if progress is not None:
            progress()
    return count
