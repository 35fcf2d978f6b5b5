"""Tests of the training recipe options: field of view, anchor smoothing, encoders in the loop,
encoder learning rate, epochs and pair-shared augmentation (exact on resume)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from instrument_seg.config import load_config
from instrument_seg.cues.pipeline import dataset_cues
from instrument_seg.data import load_dataset
from instrument_seg.model.checkpoint import load_checkpoint
from instrument_seg.training.loop import _param_groups, _steps_of_epochs, train
from instrument_seg.training.losses import HINGE_STATS
from instrument_seg.training.trainset import build_training_set, smooth_anchor

SIZE = (64, 96)


def _endoscope_tree(root: Path, n: int = 4) -> Path:
    """One sequence of red tissue in a black circle with a grey bar entering from the left."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :96]
    circle = (yy - 32) ** 2 + (xx - 48) ** 2 < 40**2
    for i in range(n):
        rgb = np.zeros((64, 96, 3), np.uint8)
        rgb[circle] = (180, 60, 60)
        rgb[circle] += rng.integers(0, 25, (circle.sum(), 3)).astype(np.uint8)
        mask = np.zeros((64, 96), bool)
        mask[28 + i : 36 + i, 10:60] = True
        mask &= circle
        rgb[mask] = (150, 150, 155)
        (root / "seq" / "images").mkdir(parents=True, exist_ok=True)
        (root / "seq" / "masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "seq" / "images" / f"{i:03d}.png"), rgb[..., ::-1])
        cv2.imwrite(str(root / "seq" / "masks" / f"{i:03d}.png"), mask.astype(np.uint8) * 255)
    return root


def _config(*extra: str) -> dict:
    return load_config(
        overrides=[
            f"data.size=[{SIZE[0]},{SIZE[1]}]",
            f"features.size=[{SIZE[0]},{SIZE[1]}]",
            "cues.cache_dir=null",
            "cues.workers=1",
            "train.threads=1",
            "train.steps=3",
            *extra,
        ]
    )


class TestFieldOfView:
    def test_cues_and_anchors_are_zero_outside(self, tmp_path):
        ds = load_dataset(_endoscope_tree(tmp_path / "d"))
        frames = dataset_cues(ds, _config())
        fov = frames[0].fov
        assert fov is not None and 0.2 < 1 - fov.mean() < 0.6  # the black corners
        for name, cue in frames[0].cues.items():
            assert not cue[~fov].any(), name
        a_pos, a_neg = frames[0].anchors(["color", "objectness", "location"])
        assert not a_pos[~fov].any() and not a_neg[~fov].any()
        assert a_neg[fov].max() > 0
        data = build_training_set(ds, _config(), None)
        assert data.valid is not None and data.valid.shape == (4, *SIZE)
        off = dataset_cues(ds, _config("data.field_of_view=false"))
        assert off[0].fov is None and off[0].cues["color"][~fov].max() > 0.3  # black is "grey"


class TestAnchorSmoothing:
    def test_shrink_and_enlarge(self):
        a = np.zeros((16, 16), np.float32)
        a[4:8, 4:8] = 1.0
        same = smooth_anchor((a, 1 - a), 1)
        assert same[0] is a
        pos, neg = smooth_anchor((a, 1 - a), 4)
        assert pos.shape == a.shape and 0 < pos.max() <= 1 and pos[0, 15] == 0
        assert abs(pos.sum() - a.sum()) < 0.2 * a.sum()


class TestLoopOptions:
    def test_epochs_to_steps(self):
        assert _steps_of_epochs(6, 10, 2) == 30
        with pytest.raises(Exception, match="train.epochs"):
            _steps_of_epochs(0, 10, 2)

    def test_encoder_learning_rate(self):
        from instrument_seg.model.network import build_model

        net = build_model({"encoder": "resnet18", "decoder": [4, 4, 4, 4, 4]})
        groups = _param_groups(net, {"encoder_lr": 1e-5})
        assert len(groups) == 2 and groups[0]["lr"] == 1e-5
        n = sum(p.numel() for g in groups for p in g["params"])
        assert n == sum(p.numel() for p in net.parameters())
        assert len(_param_groups(net, {"encoder_lr": None})) == 1

    def test_pretrained_encoder_trains_and_resumes_exactly_with_augmentation(self, tmp_path):
        pytest.importorskip("efficientnet_lite_pytorch")
        ds = load_dataset(_endoscope_tree(tmp_path / "d"))
        opts = (
            "model.encoder=efficientnet_lite0",
            "model.decoder=[8,8,8,8,4]",
            "train.augment.enabled=true",
            "train.encoder_lr=0.0001",
            "loss.border_cells=1",
            "loss.use_fg=true",
            "loss.use_bg=true",
            "train.anchor_smoothing=2",
        )
        full = train(ds, tmp_path / "full", _config(*opts, "train.steps=4"), progress=False)
        assert full["steps"] == 4
        payload = load_checkpoint(tmp_path / "full")
        assert payload["model_kwargs"]["encoder"] == "efficientnet_lite0"
        assert payload["normalization"]["mean"] == [0.498, 0.498, 0.498]
        train(ds, tmp_path / "half", _config(*opts, "train.steps=2"), progress=False)
        resumed = _config(*opts, "train.steps=4")
        train(ds, tmp_path / "half", resumed, resume=True, progress=False)

        def rows(run):
            with (run / "loss.csv").open() as f:
                return [
                    [r[k] for k in ("step", "total", "anc_t", "fg", "bg", *HINGE_STATS)]
                    for r in csv.DictReader(f)
                ]

        assert rows(tmp_path / "full") == rows(tmp_path / "half")
        for row in rows(tmp_path / "full"):  # the hinge diagnostics are logged every step
            cosines, active = map(float, row[5:8]), map(float, row[8:])
            assert all(-1.0 <= c <= 1.0 for c in cosines)
            assert all(a in (0.0, 0.5, 1.0) for a in active)  # share of a batch of 2 pairs
        a = load_checkpoint(tmp_path / "full")["model"]
        b = load_checkpoint(tmp_path / "half")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)

    def test_epochs_in_a_run(self, tmp_path):
        ds = load_dataset(_endoscope_tree(tmp_path / "d", n=5))
        config = _config(
            "train.epochs=2",
            "train.batch_size=2",
            "loss.use_fg=false",
            "loss.use_bg=false",
            "model.encoder=unet",
            "model.width=4",
            "model.depth=2",
        )
        summary = train(ds, tmp_path / "run", config, progress=False)
        assert summary["steps"] == 4  # 4 pairs x 2 epochs / 2 pairs per step
