"""Tests of instrument_seg.inference.bench: backend vs PyTorch eager in one run."""

from __future__ import annotations

import shutil

import pytest

from inference import support
from inference.support import one_sentence
from instrument_seg.errors import InputError
from instrument_seg.inference import Segmenter
from instrument_seg.inference.bench import find_checkpoint, format_table, run_bench
from instrument_seg.inference.export import export


class TestBench:
    def test_report(self, tiny_onnx):
        report = run_bench(tiny_onnx, size=(48, 60), batch=2, repeats=3, warmup=1, threads=1)
        assert report["backend"] == "onnxruntime" and report["baseline"].endswith("checkpoint.pt")
        assert report["frame_size"] == [48, 60] and report["input_size"] == [64, 80]
        for name in ("onnxruntime", "torch"):
            for part in ("model", "end_to_end"):
                s = report["results"][name][part]
                assert s["n"] == 3 and 0 < s["median_ms"] <= s["p95_ms"]
                assert s["frames_per_s"] == pytest.approx(2000 / s["median_ms"])
        mine, base = report["results"]["onnxruntime"], report["results"]["torch"]
        assert report["ratio"]["model"] == pytest.approx(
            base["model"]["median_ms"] / mine["model"]["median_ms"]
        )
        assert len(report["load_average"]["before"]) == 3
        table = format_table(report).splitlines()
        assert len(table) == 6 and table[2].startswith("| onnxruntime | model |")

    def test_torch_against_itself(self, tiny_run):
        report = run_bench(tiny_run, batch=1, repeats=1, warmup=0)
        assert list(report["results"]) == ["torch"]
        assert report["ratio"] == {"model": 1.0, "end_to_end": 1.0}

    def test_checkpoint_found_next_to_a_moved_onnx(self, tiny_run, tiny_onnx, tmp_path):
        with Segmenter.from_path(tiny_onnx) as seg:
            assert find_checkpoint(seg) == tiny_run / "checkpoint.pt"  # where it was exported
        original = shutil.copytree(tiny_run, tmp_path / "original")
        exported = export(original, original / "model.onnx").onnx
        deploy = tmp_path / "deploy"
        shutil.move(original, deploy)  # the recorded checkpoint path is gone now
        assert not exported.exists()
        with Segmenter.from_path(deploy / "model.onnx") as seg:
            assert find_checkpoint(seg) == deploy / "checkpoint.pt"

    def test_no_checkpoint_for_the_baseline(self, tiny_run, tmp_path):
        run = support.write_run(tmp_path / "run", steps=1)
        onnx_path = export(run, tmp_path / "m.onnx").onnx
        (run / "checkpoint.pt").write_bytes(b"retrained since")  # another SHA-256
        with pytest.raises(InputError) as exc:
            run_bench(onnx_path, repeats=1)
        one_sentence(str(exc.value), "--torch-model", "checkpoint.pt")
        report = run_bench(onnx_path, repeats=1, warmup=0, torch_model=tiny_run)
        assert report["baseline"] == str(tiny_run / "checkpoint.pt")

    @pytest.mark.parametrize("kwargs", [{"batch": 0}, {"repeats": 0}, {"warmup": -1}])
    def test_bad_counts(self, tiny_onnx, kwargs):
        with pytest.raises(InputError) as exc:
            run_bench(tiny_onnx, **kwargs)
        one_sentence(str(exc.value), "batch >= 1")
