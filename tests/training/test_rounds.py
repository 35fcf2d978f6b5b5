"""Self-training rounds (train.rounds): fusion, the anchors file, and a run's rounds and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_recipe import _config, _endoscope_tree

from instrument_seg.data import load_dataset
from instrument_seg.errors import InputError
from instrument_seg.model.checkpoint import load_checkpoint, model_from_checkpoint
from instrument_seg.model.network import normalization
from instrument_seg.training.loop import train
from instrument_seg.training.rounds import (
    anchors_path,
    check_rounds,
    fuse,
    load_anchors,
    predict_frames,
    save_anchors,
)
from instrument_seg.training.trainset import build_training_set

TINY = (
    "loss.use_fg=false",
    "loss.use_bg=false",
    "model.encoder=unet",
    "model.width=4",
    "model.depth=2",
)


class TestPieces:
    def test_fuse_hand_computed(self):
        a_pos = np.array([[[0.8, 0.0]]], np.float32)
        a_neg = np.array([[[0.1, 0.6]]], np.float32)
        p = np.array([[[0.5, 0.25]]], np.float32)
        pos, neg = fuse(a_pos, a_neg, p, "product")
        np.testing.assert_allclose(pos, [[[0.4, 0.0]]])
        np.testing.assert_allclose(neg, [[[0.05, 0.45]]])
        pos, neg = fuse(a_pos, a_neg, p, "mean")
        np.testing.assert_allclose(pos, [[[0.65, 0.125]]])
        np.testing.assert_allclose(neg, [[[0.3, 0.675]]])
        assert pos.dtype == neg.dtype == np.float32
        with pytest.raises(InputError, match="round_fusion 'max'"):
            fuse(a_pos, a_neg, p, "max")

    @pytest.mark.parametrize(
        ("train", "message"),
        [
            ({"rounds": 0, "round_fusion": "product", "supervision": 0}, "integer >= 1, got 0"),
            ({"rounds": 1.5, "round_fusion": "mean", "supervision": 0}, "got 1.5"),
            ({"rounds": True, "round_fusion": "mean", "supervision": 0}, "got True"),
            ({"rounds": 2, "round_fusion": "max", "supervision": 0}, "'max' .valid: product"),
            ({"rounds": 2, "round_fusion": "mean", "supervision": 50}, "supervision=0 .got 50"),
        ],
    )
    def test_check_rounds(self, train, message):
        with pytest.raises(InputError, match=message):
            check_rounds(train)

    def test_check_rounds_accepts(self):
        assert check_rounds({"rounds": 3, "round_fusion": "mean", "supervision": 0}) == (3, "mean")
        assert check_rounds({"rounds": 1, "round_fusion": "product", "supervision": 100}) == (
            1,
            "product",
        )

    def test_anchors_file_round_trip(self, tmp_path):
        rng = np.random.default_rng(0)
        a_pos, a_neg = rng.random((2, 3, 4, 5), dtype=np.float32)
        path = anchors_path(tmp_path, 2)
        save_anchors(path, a_pos, a_neg)
        assert path.name == "anchors_round2.npz" and not list(tmp_path.glob("*.tmp*"))
        pos, neg = load_anchors(path, (3, 4, 5))
        np.testing.assert_allclose(pos, a_pos, atol=1e-3)  # float16 on disk
        np.testing.assert_allclose(neg, a_neg, atol=1e-3)
        with pytest.raises(InputError, match=r"anchors_round2.npz holds anchors of shape"):
            load_anchors(path, (3, 4, 6))
        (tmp_path / "bad.npz").write_bytes(b"not a zip")
        with pytest.raises(InputError, match=r"cannot read the self-training anchors .*bad.npz"):
            load_anchors(tmp_path / "bad.npz", (3, 4, 5))

    def test_predict_frames_is_the_eval_network_times_the_view(self):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 3, padding=1), torch.nn.BatchNorm2d(1))
        net.train()
        frames = np.random.default_rng(1).integers(0, 255, (5, 8, 12, 3), dtype=np.uint8)
        valid = np.ones((5, 8, 12), np.float32)
        valid[:, :, :3] = 0
        norm = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        p = predict_frames(net, frames, norm, torch.device("cpu"), valid, batch=2)
        assert net.training  # mode restored
        net.eval()
        x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
        with torch.no_grad():
            ref = torch.sigmoid(net(x))[:, 0].numpy() * valid
        np.testing.assert_allclose(p, ref, atol=1e-6)
        assert p.shape == (5, 8, 12) and not p[:, :, :3].any()


class TestRoundsInARun:
    def test_round_two_learns_from_fused_anchors_and_resumes(self, tmp_path):
        ds = load_dataset(_endoscope_tree(tmp_path / "d"))
        two = _config(*TINY, "train.rounds=2", "train.round_fusion=product")
        summary = train(ds, tmp_path / "two", two, progress=False)
        assert (summary["steps"], summary["rounds"]) == (6, 2)
        # Round 2's anchors = cue anchors x the predictions of the network after round 1.
        one = train(ds, tmp_path / "one", _config(*TINY), progress=False)
        assert one["rounds"] == 1 and not anchors_path(tmp_path / "one", 2).exists()
        payload = load_checkpoint(tmp_path / "one")
        net = model_from_checkpoint(payload)
        cues = build_training_set(ds, two, None)
        p = predict_frames(net, cues.frames, normalization(payload["model_kwargs"]), "cpu")
        p = p * cues.valid
        a_pos, a_neg = load_anchors(anchors_path(tmp_path / "two", 2), cues.a_pos.shape)
        np.testing.assert_allclose(a_pos, cues.a_pos * p, atol=2e-3)
        np.testing.assert_allclose(a_neg, cues.a_neg * (1 - p), atol=2e-3)
        assert not np.allclose(a_pos, cues.a_pos, atol=0.02)  # round 2 really differs
        # Resuming round 1's run with train.rounds=2 gives the two-round run exactly.
        train(ds, tmp_path / "one", _config(*TINY, "train.rounds=2"), resume=True, progress=False)
        a = load_checkpoint(tmp_path / "two")["model"]
        b = load_checkpoint(tmp_path / "one")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)

    def test_resume_inside_a_later_round_needs_its_anchors(self, tmp_path):
        ds = load_dataset(_endoscope_tree(tmp_path / "d"))
        run = tmp_path / "run"
        train(ds, run, _config(*TINY), progress=False)  # 3 steps
        inside = _config(*TINY, "train.steps=2", "train.rounds=2")  # step 3 is inside round 2
        with pytest.raises(InputError, match=r"inside round 2: .*anchors_round2.npz is missing"):
            train(ds, run, inside, resume=True, progress=False)
        cues = build_training_set(ds, inside, None)
        save_anchors(anchors_path(run, 2), cues.a_pos * 0.5, cues.a_neg)
        summary = train(ds, run, inside, resume=True, progress=False)
        assert (summary["steps"], summary["resumed_from"]) == (4, 3)
