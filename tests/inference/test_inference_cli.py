"""The export / predict / evaluate / bench commands as a user runs them, through every backend
available here (subprocesses on generated data)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_support import run_cli as cli
from inference.support import one_sentence
from instrument_seg.inference.base import tensorrt_usable


def one_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    one_sentence(errors[0], *words)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from instrument_seg.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("cli") / "data", 2, 3, (64, 80), seed=4)


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> Path:
    onnx_path = tmp_path_factory.mktemp("exported") / "model.onnx"
    proc = cli("export", "--model", tiny_run, "--onnx", onnx_path, "--dynamic")
    last = proc.stdout.splitlines()[-1]
    assert last.startswith(f"export: {onnx_path} (64x80, dynamic batch), max |p_onnx - p_torch|")
    return onnx_path


class TestEvaluatePredictAcrossBackends:
    def test_evaluate_scores_identical(self, tiny_run, exported, data, tmp_path):
        reports = {}
        for model, backend in ((tiny_run, "torch"), (exported, "auto")):
            out = tmp_path / f"{backend}.json"
            proc = cli(
                "evaluate", "--model", model, "--data", data, "--backend", backend, "--json", out
            )
            assert proc.stdout.splitlines()[-1].startswith("evaluate: 6 frame(s), IoU")
            reports[backend] = json.loads(out.read_text())
        torch_report, ort_report = reports["torch"], reports["auto"]
        assert torch_report["backend"] == "torch" and ort_report["backend"] == "onnxruntime"
        assert ort_report["model"] == str(exported)
        assert len(ort_report["frames"]) == 6
        assert ort_report["frames"] == torch_report["frames"]
        assert ort_report["threshold"] == torch_report["threshold"]
        assert 0 < ort_report["iou"]["mean"] < 1

    def test_predict_masks_identical(self, tiny_run, exported, data, tmp_path):
        for model, name in ((tiny_run, "torch"), (exported, "onnxruntime")):
            proc = cli("predict", "--model", model, "--data", data, "--out", tmp_path / name)
            assert proc.stdout.splitlines()[-1].endswith(f"({name})")
        masks = sorted((tmp_path / "torch").glob("*/masks/*.png"))
        assert len(masks) == 6
        for path in masks:
            twin = tmp_path / "onnxruntime" / path.relative_to(tmp_path / "torch")
            a, b = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (path, twin))
            np.testing.assert_array_equal(a, b)
            assert set(np.unique(a)) <= {0, 255}
            probs = [str(p).replace("/masks/", "/probs/") for p in (path, twin)]
            pa, pb = (cv2.imread(p, cv2.IMREAD_UNCHANGED).astype(int) for p in probs)
            assert np.abs(pa - pb).max() <= 1  # 16-bit quantisation of equal probabilities

    def test_bench(self, tiny_run, exported, tmp_path):
        """The ONNX is in another folder than its checkpoint (its metadata names only the file,
        not this machine's folders): the baseline is named with --torch-model."""
        out = tmp_path / "bench.json"
        proc = cli(
            "bench",
            "--model",
            exported,
            "--torch-model",
            tiny_run,
            "--backend",
            "onnxruntime",
            "--size",
            "64x80",
            "--repeats",
            2,
            "--warmup",
            0,
            "--threads",
            1,
            "--json",
            out,
        )
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("| backend | part | median ms")
        assert lines[-1].startswith("bench: onnxruntime ") and "x PyTorch eager" in lines[-1]
        assert "load average" in lines[-1]
        report = json.loads(out.read_text())
        assert set(report["results"]) == {"onnxruntime", "torch"}


class TestBadInput:
    def test_backend_that_cannot_serve_the_model(self, tiny_run, data):
        proc = cli(
            "evaluate",
            "--model",
            tiny_run,
            "--data",
            data,
            "--backend",
            "onnxruntime",
            check=False,
        )
        one_error(proc, "onnxruntime backend needs an .onnx file")

    def test_bad_threshold(self, exported, data, tmp_path):
        proc = cli(
            "predict",
            "--model",
            exported,
            "--data",
            data,
            "--out",
            tmp_path / "p",
            "--threshold",
            "7",
            check=False,
        )
        one_error(proc, "threshold '7'")
        assert not (tmp_path / "p").exists()

    @pytest.mark.parametrize("existing", [False, True], ids=["new-out", "existing-out"])
    def test_corrupt_frame_halfway_leaves_nothing(self, exported, data, tmp_path, existing):
        """Was: exit 2, but the frames before the bad one were left in --out."""
        import shutil

        copy = Path(shutil.copytree(data, tmp_path / "data"))
        bad = copy / "seq_01" / "images" / "frame_0001.png"
        png = bytearray(bad.read_bytes())
        png[-30] ^= 0xFF  # a CRC error near the end of the last chunk before IEND
        bad.write_bytes(bytes(png))
        out = tmp_path / "pred"
        if existing:
            (out / "seq_00" / "masks").mkdir(parents=True)
            (out / "seq_00" / "masks" / "frame_0000.png").write_bytes(b"old")
        before = sorted(str(p) for p in tmp_path.rglob("*"))
        proc = cli("predict", "--model", exported, "--data", copy, "--out", out, check=False)
        one_error(proc, "cannot read image", str(bad), "CRC")
        assert proc.stderr.count("libpng") == 0
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before

    def test_truncated_jpeg_frame_refused(self, exported, data, tmp_path):
        import shutil

        copy = Path(shutil.copytree(data, tmp_path / "data"))
        frame = copy / "seq_00" / "images" / "frame_0002.png"
        jpeg = cv2.imencode(".jpg", cv2.imread(str(frame)))[1].tobytes()
        frame.unlink()
        (frame.with_suffix(".jpg")).write_bytes(jpeg[: len(jpeg) // 2])
        for args in (
            ("predict", "--model", exported, "--out", tmp_path / "pred"),
            ("bag", "--out", tmp_path / "bag"),
        ):
            proc = cli(*args, "--data", copy, check=False)
            one_error(proc, "frame_0002.jpg", "truncated")
            assert "Premature end" not in proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]

    def test_corrupt_onnx(self, data, tmp_path):
        (tmp_path / "m.onnx").write_bytes(b"nonsense")
        proc = cli("evaluate", "--model", tmp_path / "m.onnx", "--data", data, check=False)
        one_error(proc, "m.onnx", "cannot be loaded")

    def test_fp16_needs_an_engine(self, tiny_run, tmp_path):
        proc = cli(
            "export", "--model", tiny_run, "--onnx", tmp_path / "m.onnx", "--fp16", check=False
        )
        one_error(proc, "--engine")
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.skipif(tensorrt_usable(), reason="needs a machine without tensorrt")
    def test_engine_without_tensorrt(self, tiny_run, tmp_path):
        proc = cli(
            "export",
            "--model",
            tiny_run,
            "--onnx",
            tmp_path / "m.onnx",
            "--engine",
            tmp_path / "m.engine",
            check=False,
        )
        one_error(proc, "tensorrt")
        assert list(tmp_path.iterdir()) == []
