"""Table-2 style scores of the cues and anchors against ground truth.

For every combination of the enabled cues: Otsu (or the official threshold) on ``a_pos`` and on
``1 - a_neg``, per frame and as mean ± std over frames. A single-cue combination is the cue itself
(``a_pos = c`` and ``1 - a_neg = c``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from instrument_seg.config import working_size
from instrument_seg.cues.anchors import cue_combinations
from instrument_seg.cues.pipeline import FrameCues, dataset_anchors, dataset_cues
from instrument_seg.data import Dataset
from instrument_seg.evaluation.metrics import score, summarize

ANCHOR_KEYS = ("a_pos", "1-a_neg")


def combo_key(combo: Sequence[str]) -> str:
    return "+".join(combo)


def threshold_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``threshold`` config section as keyword arguments of ``imaging.binarize``."""
    t = config["threshold"]
    return {"method": t["method"], "value": float(t["value"]), "min_area": float(t["min_area"])}


METRICS = ("iou", "dice", "precision", "recall")
#: Report key of the refined all-cue anchor (config ``anchors:``), beside the combinations.
REFINED = "refined"


def _refining(config: Mapping[str, Any]) -> bool:
    a = config.get("anchors") or {}
    return bool(a.get("highlights") or a.get("temporal") or a.get("border"))


def evaluate_cues(frames: Sequence[FrameCues], config: Mapping[str, Any]) -> dict[str, Any]:
    """Scores every cue combination on every frame that has ground truth, and the refined
    anchor of all enabled cues when a refinement of the ``anchors:`` section is on.

    Returns:
        ``{"combinations": {key: {anchor: {metric: {mean, std, n}}}},
        "frames": [{"sequence", "frame", "scores": {key: {anchor: {metric}}}}]}``
        where ``key`` is e.g. ``color+objectness`` (or ``refined``), ``anchor`` is ``a_pos``
        or ``1-a_neg`` and ``metric`` one of ``iou``, ``dice``, ``precision``, ``recall``.
    """
    enabled = config["cues"]["enabled"]
    combos = [combo_key(c) for c in cue_combinations(enabled)]
    anchors = {key: [fc.anchors(key.split("+")) for fc in frames] for key in combos}
    if _refining(config):
        combos.append(REFINED)
        anchors[REFINED] = dataset_anchors(
            frames, enabled, config["anchors"], bool(config["data"]["still_images"])
        )
    thr = threshold_kwargs(config)
    per_frame = []
    for k, fc in enumerate(frames):
        if fc.gt is None:
            continue
        scores = {}
        for key in combos:
            a_pos, a_neg = anchors[key][k]  # both 0 outside the field of view
            scores[key] = {
                "a_pos": score(a_pos, fc.gt, fc.fov, **thr),
                "1-a_neg": score(1.0 - a_neg, fc.gt, fc.fov, **thr),
            }
        per_frame.append({"sequence": fc.sequence, "frame": fc.name, "scores": scores})
    summary = {
        key: {
            anchor: {
                metric: summarize([f["scores"][key][anchor][metric] for f in per_frame])
                for metric in METRICS
            }
            for anchor in ANCHOR_KEYS
        }
        for key in combos
    }
    return {"combinations": summary, "frames": per_frame}


def cue_report(
    dataset: Dataset,
    config: Mapping[str, Any],
    data: str | None = None,
    progress: Callable[[], None] | None = None,
) -> tuple[list[FrameCues], dict[str, Any]]:
    """Computes every frame's cues and, where there is ground truth, scores them (Table 2).

    Args:
        dataset: the loaded dataset.
        config: resolved config (``data``, ``cues``, ``threshold`` sections are used).
        data: how the report names the dataset (default: ``dataset.root``).
        progress: called once per frame whose cues are done.

    Returns:
        ``(frames, report)``: the frames' cues (float (h, w) maps at working size) and the
        ``cues --json`` report ``{"data", "layout", "n_frames", "size", "cues",
        "objectness", "threshold", "seconds_per_frame"}``, plus :func:`evaluate_cues`'
        ``"combinations"`` and ``"frames"`` when any frame has ground truth.
    """
    start = time.perf_counter()
    frames = dataset_cues(dataset, config, progress=progress)
    seconds = (time.perf_counter() - start) / max(1, len(frames))
    report: dict[str, Any] = {
        "data": str(dataset.root) if data is None else data,
        "layout": dataset.layout,
        "n_frames": len(frames),
        "size": list(working_size(config)),
        "cues": list(config["cues"]["enabled"]),
        "objectness": config["cues"]["objectness"]["method"],
        "threshold": threshold_kwargs(config),
        "seconds_per_frame": seconds,
    }
    if any(f.gt is not None for f in frames):
        report.update(evaluate_cues(frames, config))
    return frames, report


def best_combination(report: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The cue combination whose ``a_pos`` has the highest mean IoU; None if none is scored.

    Args:
        report: a :func:`cue_report` report (or :func:`evaluate_cues` result).

    Returns:
        ``(key, scores)`` with ``scores`` as in ``report["combinations"][key]``.
    """
    combinations = report.get("combinations")
    if not combinations:
        return None
    return max(combinations.items(), key=lambda kv: kv[1]["a_pos"]["iou"]["mean"])


def format_table(summary: Mapping[str, Any]) -> str:
    """A Markdown table of mean ± std IoU / Dice (%) per combination and anchor, and the
    precision / recall (%) of ``a_pos`` (the network needs precise anchors more than complete
    ones)."""
    lines = [
        "| cues | a_pos IoU | a_pos Dice | a_pos P / R | 1-a_neg IoU | 1-a_neg Dice |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in summary.items():
        cells = [
            f"{100 * row[a][m]['mean']:.2f} ± {100 * row[a][m]['std']:.2f}"
            for a in ANCHOR_KEYS
            for m in ("iou", "dice")
        ]
        precision, recall = (100 * row["a_pos"][m]["mean"] for m in ("precision", "recall"))
        cells.insert(2, f"{precision:.1f} / {recall:.1f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
