"""Figures as PNG: the Fig.-2 style panel (image, cues, anchors, ground truth, prediction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from instrument_seg.imaging import overlay  # noqa: E402,F401 (the panels use it; re-exported)

if TYPE_CHECKING:
    from instrument_seg.cues.pipeline import FrameCues
    from instrument_seg.evaluation.dataset import ProbabilityModel

CUE_TITLES = {
    "color": "colour cue",
    "objectness": "objectness cue",
    "location": "location cue",
    "motion": "motion cue",
}


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


def write_fig2_panels(
    out: str | Path,
    frames: Sequence[FrameCues],
    config: Mapping[str, Any],
    predictor: ProbabilityModel | None = None,
) -> list[Path]:
    """Writes :func:`fig2_panel` rows for ``figures.max_frames`` evenly spaced frames.

    Anchors come from the enabled cues (``cues.enabled``); with ``predictor`` each row ends
    with its probability map. Panels are named ``<sequence>_<frame>.png``.

    Args:
        out: folder to write into (created with its parents if missing).
        frames: the dataset's cues (uint8 (h, w, 3) image, float (h, w) cues, bool gt).
        config: resolved config (``figures.max_frames``, ``cues.enabled`` are used).
        predictor: optional model whose ``probability(rgb)`` gives float (h, w) in [0, 1].

    Returns:
        The PNG files written, in frame order.
    """

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k in spread(len(frames), int(config["figures"]["max_frames"])):
        fc = frames[k]
        a_pos, a_neg = fc.anchors(config["cues"]["enabled"])
        prediction = predictor.probability(fc.image) if predictor is not None else None
        written.append(
            fig2_panel(
                out / f"{fc.sequence}_{fc.name}.png",
                fc.image,
                fc.cues,
                a_pos,
                a_neg,
                fc.gt,
                prediction=prediction,
                title=f"{fc.sequence} / {fc.name}",
            )
        )
    return written


def spread(n_total: int, n_pick: int) -> list[int]:
    """``n_pick`` indices evenly spaced over ``range(n_total)``."""
    if n_pick <= 0 or n_total == 0:
        return []
    if n_pick >= n_total:
        return list(range(n_total))
    return sorted({int(round(i)) for i in np.linspace(0, n_total - 1, n_pick)})
