"""The command line run as a user runs it: a subprocess on generated data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_support import assert_one_sentence_error, run_cli

TINY = [
    "data.size=[64,80]",
    "features.size=[64,80]",
    "model.encoder=unet",
    "model.width=4",
    "model.depth=2",
]


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "data"
    proc = run_cli("synth", "--out", out, "--sequences", 2, "--frames", 4, "--size", "64x80")
    assert "synth: wrote 2 sequence(s) x 4 frame(s)" in proc.stdout.splitlines()[-1]
    return out


class TestSynth:
    def test_layout(self, synth_data):
        images = sorted((synth_data / "seq_00" / "images").glob("*.png"))
        masks = sorted((synth_data / "seq_00" / "masks").glob("*.png"))
        assert len(images) == len(masks) == 4
        assert cv2.imread(str(images[0])).shape == (64, 80, 3)

    def test_refuses_non_empty_out(self, synth_data):
        before = sorted(p.name for p in synth_data.iterdir())
        proc = run_cli("synth", "--out", synth_data, check=False)
        assert_one_sentence_error(proc, str(synth_data))
        assert sorted(p.name for p in synth_data.iterdir()) == before


class TestCues:
    def test_table_json_and_figures(self, synth_data, tmp_path):
        report, figures = tmp_path / "cues.json", tmp_path / "figs"
        proc = run_cli(
            "cues",
            "--data",
            synth_data,
            "--json",
            report,
            "--figures",
            figures,
            "data.size=[64,80]",
            "figures.max_frames=2",
        )
        assert proc.stdout.splitlines()[-1].startswith("cues: 8 frame(s) (generic)")
        assert "| color+objectness+location |" in proc.stdout
        data = json.loads(report.read_text())
        assert data["n_frames"] == 8 and len(data["frames"]) == 8
        assert set(data["combinations"]) >= {
            "color",
            "objectness",
            "location",
            "color+objectness+location",
        }
        iou = data["combinations"]["color"]["a_pos"]["iou"]
        assert 0 <= iou["mean"] <= 1 and iou["n"] == 8
        assert len(list(figures.glob("*.png"))) == 2

    def test_subset_of_cues(self, synth_data, tmp_path):
        report = tmp_path / "c.json"
        run_cli(
            "cues",
            "--data",
            synth_data,
            "--json",
            report,
            "data.size=[64,80]",
            "cues.enabled=[color,location]",
        )
        assert set(json.loads(report.read_text())["combinations"]) == {
            "color",
            "location",
            "color+location",
        }


@pytest.fixture(scope="module")
def trained(synth_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    proc = run_cli(
        "train", "--data", synth_data, "--out", out, "train.steps=6", "train.lr=0.01", *TINY
    )
    assert proc.stdout.splitlines()[-1].startswith("train: 6 steps on 8 frames")
    return out


class TestTrainEvaluatePredict:
    def test_run_directory(self, trained):
        assert {"checkpoint.pt", "config.yaml", "loss.csv", "summary.json"} <= {
            p.name for p in trained.iterdir()
        }
        rows = list(csv.DictReader((trained / "loss.csv").open()))
        assert [int(r["step"]) for r in rows] == list(range(1, 7))
        assert float(rows[-1]["total"]) < float(rows[0]["total"])  # the loss goes down

    def test_resume_continues_the_step_count(self, trained, synth_data, tmp_path):
        import shutil

        copy = tmp_path / "resumed"
        shutil.copytree(trained, copy)
        run_cli("train", "--data", synth_data, "--out", copy, "--resume", "train.steps=8")
        rows = list(csv.DictReader((copy / "loss.csv").open()))
        assert [int(r["step"]) for r in rows] == list(range(1, 9))

    def test_evaluate_json_and_figures(self, trained, synth_data, tmp_path):
        report = tmp_path / "eval.json"
        proc = run_cli(
            "evaluate",
            "--model",
            trained,
            "--data",
            synth_data,
            "--json",
            report,
            "--figures",
            tmp_path / "figs",
        )
        assert proc.stdout.splitlines()[-1].startswith("evaluate: 8 frame(s), IoU")
        data = json.loads(report.read_text())
        assert data["iou"]["n"] == 8 and len(data["frames"]) == 8
        assert all(0 <= f["iou"] <= 1 for f in data["frames"])
        assert list((tmp_path / "figs").glob("*.png"))

    def test_predict_writes_masks_probabilities_overlays(self, trained, synth_data, tmp_path):
        run_cli("predict", "--model", trained, "--data", synth_data, "--out", tmp_path / "pred")
        mask = cv2.imread(str(tmp_path / "pred/seq_00/masks/frame_0000.png"), cv2.IMREAD_UNCHANGED)
        prob = cv2.imread(str(tmp_path / "pred/seq_00/probs/frame_0000.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (64, 80) and set(np.unique(mask)) <= {0, 255}
        assert prob.dtype == np.uint16
        assert (tmp_path / "pred/seq_01/overlays/frame_0003.png").is_file()


class TestAblate:
    def test_table1_trains_and_scores_every_loss_variant(self, synth_data, tmp_path):
        out = tmp_path / "t1"
        proc = run_cli("ablate", "--data", synth_data, "--out", out, "--table", "1",
                   "train.steps=2", *TINY)  # fmt: skip
        assert proc.stdout.splitlines()[-1].startswith("ablate: table 1, 4 variants; best ")
        rows = json.loads((out / "table1.json").read_text())["rows"]
        assert list(rows) == ["L_anc", "L_anc+L_fg", "L_anc+L_bg", "full"]
        for name, row in rows.items():
            assert row["iou"]["n"] == 8 and 0 <= row["iou"]["mean"] <= 1
            assert (out / name / "checkpoint.pt").is_file()
        lines = (out / "table1.md").read_text().splitlines()
        assert lines[0].startswith("| loss |") and len(lines) == 2 + 4
        config = (out / "L_anc" / "config.yaml").read_text()
        assert "use_fg: false" in config and "use_bg: false" in config

    def test_unknown_table(self, synth_data, tmp_path):
        proc = run_cli("ablate", "--data", synth_data, "--out", tmp_path / "t", "--table", "3",
                   check=False)  # fmt: skip
        assert proc.returncode == 2 and "invalid choice: 3" in proc.stderr
        assert not (tmp_path / "t").exists()


class TestBadInput:
    def test_missing_directory(self, tmp_path):
        proc = run_cli(
            "cues", "--data", tmp_path / "nope", "--json", tmp_path / "r.json", check=False
        )
        assert_one_sentence_error(proc, "does not exist")
        assert not (tmp_path / "r.json").exists()

    def test_empty_directory(self, tmp_path):
        (tmp_path / "empty").mkdir()
        proc = run_cli("cues", "--data", tmp_path / "empty", check=False)
        assert_one_sentence_error(proc, "no frames found", "empty")

    def test_unreadable_image_writes_nothing(self, synth_data, tmp_path):
        import shutil

        data = tmp_path / "data"
        shutil.copytree(synth_data, data)
        (data / "seq_01" / "images" / "frame_0002.png").write_bytes(b"garbage")
        proc = run_cli(
            "cues",
            "--data",
            data,
            "--json",
            tmp_path / "r.json",
            "--figures",
            tmp_path / "f",
            check=False,
        )
        assert_one_sentence_error(proc, "cannot read image", "frame_0002.png")
        assert not (tmp_path / "r.json").exists() and not (tmp_path / "f").exists()

    def test_mask_size_mismatch(self, synth_data, tmp_path):
        import shutil

        data = tmp_path / "data"
        shutil.copytree(synth_data, data)
        cv2.imwrite(str(data / "seq_00" / "masks" / "frame_0001.png"), np.zeros((8, 8), np.uint8))
        proc = run_cli("cues", "--data", data, "--json", tmp_path / "r.json", check=False)
        assert_one_sentence_error(proc, "frame_0001.png", "8x8", "64x80")
        assert not (tmp_path / "r.json").exists()

    def test_one_frame_sequence_cannot_be_paired(self, tmp_path):
        run_cli(
            "synth", "--out", tmp_path / "one", "--sequences", 1, "--frames", 1, "--size", "64x80"
        )
        proc = run_cli(
            "train", "--data", tmp_path / "one", "--out", tmp_path / "run", *TINY, check=False
        )
        assert_one_sentence_error(proc, str(tmp_path / "one"), "frame pairs need two")
        assert not (tmp_path / "run").exists()

    def test_frames_of_different_size_in_a_sequence(self, synth_data, tmp_path):
        import shutil

        data = tmp_path / "data"
        shutil.copytree(synth_data, data)
        for kind in ("images", "masks"):
            path = data / "seq_01" / kind / "frame_0003.png"
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(path), cv2.resize(image, (96, 64)))
        proc = run_cli("train", "--data", data, "--out", tmp_path / "run", *TINY, check=False)
        assert_one_sentence_error(proc, "frame_0003", "seq_01", "64x96", "64x80")
        assert not (tmp_path / "run").exists()

    def test_unknown_config_key(self, synth_data, tmp_path):
        proc = run_cli("cues", "--data", synth_data, "cues.colour=1", check=False)
        assert_one_sentence_error(proc, "unknown config key 'cues.colour'")

    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--setting", "xx"], ["unknown setting 'xx'"]),
            (["--setting", "tt", "--fold", "7"], ["fold 7"]),
            (["--setting", "tt"], ["fold None"]),
        ],
    )
    def test_unknown_setting_or_fold(self, synth_data, tmp_path, args, words):
        proc = run_cli(
            "train", "--data", synth_data, "--out", tmp_path / "run", *args, *TINY, check=False
        )
        assert_one_sentence_error(proc, *words)
        assert not (tmp_path / "run").exists()

    def test_missing_checkpoint(self, synth_data, tmp_path):
        proc = run_cli("evaluate", "--model", tmp_path, "--data", synth_data, check=False)
        assert_one_sentence_error(proc, "no checkpoint")
