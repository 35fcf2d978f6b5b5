"""Prediction over a dataset and scoring against ground truth (IoU / Dice per frame).

Anything with a ``probability(rgb) -> float32 (H, W)`` method predicts: usually an
:class:`instrument_seg.inference.Segmenter`, so every backend (TensorRT, ONNX Runtime,
PyTorch) is evaluated by the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np

from instrument_seg.data import Dataset
from instrument_seg.evaluation.metrics import dice, iou, summarize
from instrument_seg.imaging import binarize


class ProbabilityModel(Protocol):
    """What evaluation needs of a model."""

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> float32 (H, W) P(instrument) at the frame's resolution."""
        ...


def iter_predictions(
    predictor: ProbabilityModel, dataset: Dataset, threshold: Mapping[str, Any]
) -> Iterator[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Yields (sequence, frame, rgb, prob, mask, gt) for every frame of ``dataset``.

    ``mask`` is bool (H, W) from ``imaging.binarize(prob, **threshold)``; a predictor with its
    own ``predict`` and this ``threshold`` (a :class:`~instrument_seg.inference.Segmenter`)
    makes the mask itself, exactly as the ROS node does (inside the field of view).
    """
    own = callable(getattr(predictor, "predict", None)) and (
        getattr(predictor, "threshold", None) == dict(threshold)
    )
    for seq in dataset.sequences:
        for i in range(len(seq)):
            rgb = seq.image(i)
            if own:
                mask8, prob = predictor.predict(rgb)
                mask = mask8 > 0
            else:
                prob = predictor.probability(rgb)
                mask = binarize(prob, **threshold)
            yield seq.name, seq.frame_name(i), rgb, prob, mask, seq.mask(i)


def evaluate_dataset(
    predictor: ProbabilityModel,
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
