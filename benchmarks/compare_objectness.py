"""Objectness methods compared on labelled frames (the table in docs/objectness.md).

Run: .venv/bin/python benchmarks/compare_objectness.py --data DIR [--size HxW]
       [--panels FILE.png] [--seed S]
DIR is any dataset layout ``instrument-seg`` reads (with ground truth), e.g. the EndoVis 2017
sample. Per method variant, mean ± std over frames of: IoU of the Otsu-thresholded map, ROC-AUC
of the map against ground truth, IoU of Otsu on ``c_obj * c_col`` (how the cue enters
``a_pos``) and the centre bias (mean map value in the central 50 % box over the mean in the
border ring; the ground truth's own ratio is printed for reference). Not a test.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from scipy.stats import rankdata

from instrument_seg.cli.main import parse_size
from instrument_seg.cues.maps import color_cue
from instrument_seg.cues.objectness import ALEXE_CUES, objectness_map
from instrument_seg.data import load_dataset
from instrument_seg.evaluation.metrics import score
from instrument_seg.imaging import resize_rgb

VARIANTS: dict[str, tuple[str, dict]] = {
    "alexe default (ED, HED @ 64 px)": ("alexe", {}),
    "alexe ED, HED full size": ("alexe", {"edge_size": None}),
    "alexe ED, Canny full size": ("alexe", {"edges": "canny", "edge_size": None}),
    "alexe 4 cues, HED @ 64": ("alexe", {"cues": ALEXE_CUES}),
    "alexe 4 cues, Canny full size": (
        "alexe",
        {"cues": ALEXE_CUES, "edges": "canny", "edge_size": None},
    ),
    "edgeboxes default (HED @ 80 px)": ("edgeboxes", {}),
    "edgeboxes Sobel @ 80 px": ("edgeboxes", {"edges": "sobel"}),
    "saliency": ("saliency", {}),
}


def roc_auc(values: np.ndarray, gt: np.ndarray) -> float:
    """Mann-Whitney ROC-AUC of ``values`` separating ``gt`` pixels from the rest (ties: 0.5)."""
    ranks = rankdata(values.ravel())
    pos = gt.ravel()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def centre_bias(values: np.ndarray) -> float:
    """Mean in the central 50 % box over the mean in the ring outside it."""
    h, w = values.shape
    inner = np.zeros_like(values, bool)
    inner[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    return float(values[inner].mean() / max(values[~inner].mean(), 1e-12))


def fmt(values: list[float], digits: int = 3) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--size", type=parse_size, default=(256, 320), help="working size HxW")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--panels", help="write frame | GT | c_col | each method's map here")
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    frames, gts = [], []
    for seq in dataset.sequences:
        for i in range(len(seq)):
            gt = seq.mask(i)
            if gt is None:
                continue
            frames.append(resize_rgb(seq.image(i), args.size))
            gts.append(cv2.resize(gt.astype(np.uint8), args.size[::-1], cv2.INTER_NEAREST) > 0)
    if not frames:
        raise SystemExit(f"error: {args.data} has no frames with ground truth")
    colors = [color_cue(f) for f in frames]
    rows = {"c_col alone (reference)": colors}
    seconds = {}
    for name, (method, params) in VARIANTS.items():
        objectness_map(frames[0], method, seed=args.seed, **params)  # warm-up (model loads)
        start = time.perf_counter()
        rows[name] = [objectness_map(f, method, seed=args.seed, **params) for f in frames]
        seconds[name] = (time.perf_counter() - start) / len(frames)
    otsu = {"method": "otsu"}
    h, w = args.size
    print(f"{len(frames)} frames of {args.data} at {h}x{w}, seed {args.seed}")
    print(f"ground truth centre / border: {fmt([centre_bias(g.astype(float)) for g in gts], 2)}")
    print("| method | Otsu IoU | ROC-AUC | IoU of c_obj * c_col | centre / border | ms/frame |")
    print("|---|---|---|---|---|---|")
    for name, maps in rows.items():
        ious = [score(m, g, **otsu)["iou"] for m, g in zip(maps, gts, strict=True)]
        aucs = [roc_auc(m, g) for m, g in zip(maps, gts, strict=True)]
        prods = [
            score(m * c, g, **otsu)["iou"] for m, c, g in zip(maps, colors, gts, strict=True)
        ]
        bias = [centre_bias(m) for m in maps]
        ms = f"{1000 * seconds[name]:.0f}" if name in seconds else "-"
        print(
            f"| {name} | {fmt(ious)} | {fmt(aucs)} | {fmt(prods)} | {fmt(bias, 2)} | {ms} |"
        )
    if args.panels:
        write_panels(args.panels, frames, gts, rows)


def write_panels(path: str, frames, gts, rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    cols = 2 + len(names)
    fig, axes = plt.subplots(len(frames), cols, figsize=(2.2 * cols, 1.9 * len(frames)))
    axes = np.atleast_2d(axes)
    for r, (frame, gt) in enumerate(zip(frames, gts, strict=True)):
        panels = [frame, gt] + [rows[n][r] for n in names]
        titles = ["frame", "ground truth"] + names
        for c, (img, title) in enumerate(zip(panels, titles, strict=True)):
            ax = axes[r, c]
            ax.imshow(img, cmap=None if img.ndim == 3 else "magma", vmin=0, vmax=1)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"panels: {path}")


if __name__ == "__main__":
    main()
