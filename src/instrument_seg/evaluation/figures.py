"""Figures as PNG: the Fig.-2 style panel (image, cues, anchors, ground truth, prediction)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CUE_TITLES = {"color": "colour cue", "objectness": "objectness cue", "location": "location cue"}


def overlay(rgb: np.ndarray, mask: np.ndarray, color=(0, 255, 0), alpha: float = 0.45):
    """Blends a bool mask onto a uint8 RGB image (mask resized to the image if needed)."""
    import cv2

    if mask.shape != rgb.shape[:2]:
        mask = cv2.resize(mask.astype(np.uint8), rgb.shape[1::-1], cv2.INTER_NEAREST) > 0
    out = rgb.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out.astype(np.uint8)


def fig2_panel(
    path: str | Path,
    image: np.ndarray,
    cues: Mapping[str, np.ndarray],
    a_pos: np.ndarray,
    a_neg: np.ndarray,
    gt: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Writes one row: image, each cue, a_pos, a_neg, ground truth, prediction (if given).

    Args:
        path: PNG to write.
        image: uint8 (h, w, 3) RGB at working size.
        cues: float (h, w) maps keyed by cue name.
        a_pos, a_neg: float (h, w) anchors.
        gt: optional bool ground truth (any size).
        prediction: optional probability map (h, w) in [0, 1].
        title: figure title.
    """
    columns = [("image", image, None)]
    columns += [(CUE_TITLES.get(k, k), v, "magma") for k, v in cues.items()]
    columns += [("positive anchor", a_pos, "magma"), ("negative anchor", a_neg, "magma")]
    if gt is not None:
        columns.append(("ground truth", overlay(image, gt), None))
    if prediction is not None:
        columns.append(("prediction p", prediction, "magma"))
    fig, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns), 2.5), squeeze=False)
    for ax, (name, data, cmap) in zip(axes[0], columns, strict=True):
        if cmap is None:
            ax.imshow(data)
        else:
            ax.imshow(data, cmap=cmap, vmin=0.0, vmax=max(1e-6, float(np.max(data))))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def spread(n_total: int, n_pick: int) -> list[int]:
    """``n_pick`` indices evenly spaced over ``range(n_total)``."""
    if n_pick <= 0 or n_total == 0:
        return []
    if n_pick >= n_total:
        return list(range(n_total))
    return sorted({int(round(i)) for i in np.linspace(0, n_total - 1, n_pick)})
