"""The paper's ablations, one command each, on any dataset directory.

Table 1: the loss terms (L_anc; L_anc + L_fg; L_anc + L_bg; full). Table 2: every combination
of cues, scored as anchors (Otsu on ``a_pos`` and ``1 - a_neg``) and as the trained network
``p`` (with the configured loss: the full loss with the CRF term by default; the anchor loss
alone with ``loss.use_fg=false loss.use_bg=false``). Every variant is a normal run directory
under ``OUT/<variant>``; a variant whose ``summary.json`` exists is not trained again.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from instrument_seg.cues.anchors import cue_combinations
from instrument_seg.cues.pipeline import dataset_cues
from instrument_seg.data import Dataset
from instrument_seg.errors import InputError
from instrument_seg.evaluation.cue_scores import combo_key, evaluate_cues, threshold_kwargs
from instrument_seg.evaluation.dataset import evaluate_dataset
from instrument_seg.inference import Segmenter
from instrument_seg.training.loop import train
from instrument_seg.training.splits import split_sequences, subset

TABLE1 = {
    "L_anc": (False, False),
    "L_anc+L_fg": (True, False),
    "L_anc+L_bg": (False, True),
    "full": (True, True),
}


def _variant(
    dataset: Dataset,
    out: Path,
    config: dict[str, Any],
    setting: str,
    fold: int | None,
    test: Dataset,
    frame_cues,
) -> dict[str, Any]:
    if not (out / "summary.json").is_file():
        train(
            dataset,
            out,
            config,
            setting,
            fold,
            resume=True,
            cache_dir=out.parent / "cache",
            frame_cues=frame_cues,
        )
    summary = json.loads((out / "summary.json").read_text())
    with Segmenter.from_path(out, backend="torch") as segmenter:
        scores = evaluate_dataset(segmenter, test, threshold_kwargs(config))
    return {"train": summary, "iou": scores["iou"], "dice": scores["dice"]}


def _pct(s: Mapping[str, float]) -> str:
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"


def ablate(
    table: int,
    dataset: Dataset,
    out: str | Path,
    config: dict[str, Any],
    setting: str = "ss",
    fold: int | None = None,
) -> dict[str, Any]:
    """Runs Table 1 or Table 2 and writes ``OUT/table<N>.json`` and ``OUT/table<N>.md``.

    Returns:
        ``{"rows": {name: {...}}, "markdown": str}``.
    """
    out = Path(out)
    train_idx, test_idx = split_sequences(dataset, setting, fold, int(config["train"]["n_folds"]))
    test = subset(dataset, test_idx)
    if not test.has_masks:
        raise InputError(f"{dataset.root} has test frames without ground truth; cannot score")
    if table not in (1, 2):
        raise InputError(f"unknown table {table} (valid: 1, 2)")
    all_cues = copy.deepcopy(config)
    all_cues["cues"]["enabled"] = ["color", "objectness", "location"]
    train_cues = dataset_cues(subset(dataset, train_idx), all_cues, with_gt=True)
    rows: dict[str, Any] = {}
    if table == 1:
        for name, (use_fg, use_bg) in TABLE1.items():
            variant = copy.deepcopy(config)
            variant["loss"]["use_fg"], variant["loss"]["use_bg"] = use_fg, use_bg
            rows[name] = _variant(dataset, out / name, variant, setting, fold, test, train_cues)
        lines = ["| loss | IoU % | Dice % |", "|---|---|---|"]
        lines += [f"| {k} | {_pct(v['iou'])} | {_pct(v['dice'])} |" for k, v in rows.items()]
    else:
        test_cues = dataset_cues(test, all_cues, with_gt=True)
        anchors = evaluate_cues(test_cues, all_cues)["combinations"]
        for combo in cue_combinations():
            variant = copy.deepcopy(config)
            variant["cues"]["enabled"] = list(combo)
            name = combo_key(combo)
            rows[name] = _variant(dataset, out / name, variant, setting, fold, test, train_cues)
            rows[name]["anchors"] = anchors[name]
        lines = [
            "| cues | a_pos IoU % | 1-a_neg IoU % | p IoU % | p Dice % |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {_pct(v['anchors']['a_pos']['iou'])} | "
            f"{_pct(v['anchors']['1-a_neg']['iou'])} | {_pct(v['iou'])} | {_pct(v['dice'])} |"
            for k, v in rows.items()
        ]
    markdown = "\n".join(lines)
    (out / f"table{table}.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    (out / f"table{table}.md").write_text(markdown + "\n")
    return {"rows": rows, "markdown": markdown}
