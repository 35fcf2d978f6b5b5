"""Tests of instrument_seg.inference.engine: the engine sidecar and the reuse/rebuild/fail
decision, on real sidecar files (no TensorRT needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inference.support import one_sentence
from instrument_seg.errors import InputError
from instrument_seg.inference.contract import ModelContract, sha256_file
from instrument_seg.inference.engine import (
    RuntimeInfo,
    decide_engine,
    ensure_engine,
    read_sidecar,
    sidecar_onnx,
    sidecar_path,
    write_sidecar,
)

HERE = RuntimeInfo(tensorrt="10.13.3.9", gpu="NVIDIA H100 80GB HBM3")


@pytest.fixture
def deployed(tmp_path: Path) -> Path:
    """``tmp/deploy/{model.onnx, model.engine, model.engine.json}`` built 'here'."""
    folder = tmp_path / "deploy"
    folder.mkdir()
    onnx = folder / "model.onnx"
    onnx.write_bytes(b"onnx graph v1")
    engine = folder / "model.engine"
    engine.write_bytes(b"serialized engine")
    contract = ModelContract(input_size=(64, 80), mean=(0.5,) * 3, std=(0.25,) * 3)
    write_sidecar(
        engine,
        {
            "tensorrt": HERE.tensorrt,
            "gpu": HERE.gpu,
            "onnx": "model.onnx",
            "onnx_sha256": sha256_file(onnx),
            "precision": "fp32",
            "dynamic": True,
            "max_batch": 4,
            "contract": contract.to_metadata(),
        },
    )
    return engine


def edit_sidecar(engine: Path, **changes) -> None:
    path = sidecar_path(engine)
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


class TestSidecarFile:
    def test_written_next_to_the_engine(self, deployed):
        assert sidecar_path(deployed) == deployed.with_name("model.engine.json")
        sidecar = read_sidecar(deployed)
        assert sidecar["format"] == "instrument_seg.engine/1"
        assert sidecar_onnx(deployed, sidecar) == deployed.parent / "model.onnx"
        assert not list(deployed.parent.glob(".*tmp*"))

    def test_none_when_absent(self, tmp_path):
        assert read_sidecar(tmp_path / "x.engine") is None

    @pytest.mark.parametrize(
        ("text", "words"),
        [
            ("{not json", ["not readable JSON"]),
            ('{"format": "other/1"}', ["not an instrument_seg engine sidecar"]),
            ('{"format": "instrument_seg.engine/1", "gpu": "x"}', ["lacks", "tensorrt"]),
        ],
    )
    def test_bad_sidecars(self, tmp_path, text, words):
        engine = tmp_path / "m.engine"
        sidecar_path(engine).write_text(text)
        with pytest.raises(InputError) as exc:
            read_sidecar(engine)
        one_sentence(str(exc.value), "m.engine.json", *words)


class TestDecision:
    def decide(self, engine: Path, runtime: RuntimeInfo = HERE, onnx=None):
        return decide_engine(engine, read_sidecar(engine), runtime, onnx)

    def test_reuse_when_everything_matches(self, deployed):
        d = self.decide(deployed)
        assert d.action == "reuse" and d.onnx == deployed.parent / "model.onnx"

    def test_reuse_after_moving_the_folder(self, deployed, tmp_path):
        moved = shutil.move(str(deployed.parent), str(tmp_path / "elsewhere"))
        assert self.decide(Path(moved) / "model.engine").action == "reuse"

    def test_reuse_without_the_onnx(self, deployed):
        (deployed.parent / "model.onnx").unlink()
        assert self.decide(deployed).action == "reuse"

    def test_other_tensorrt_version_rebuilds(self, deployed):
        d = self.decide(deployed, RuntimeInfo("11.4.0.106", HERE.gpu))
        assert d.action == "rebuild" and d.onnx == deployed.parent / "model.onnx"
        one_sentence(d.reason, "TensorRT 10.13.3.9", "this is 11.4.0.106", "model.onnx")

    def test_other_gpu_rebuilds(self, deployed):
        d = self.decide(deployed, RuntimeInfo(HERE.tensorrt, "NVIDIA L4"))
        assert d.action == "rebuild"
        one_sentence(d.reason, "GPU NVIDIA H100 80GB HBM3", "this is NVIDIA L4")

    def test_changed_onnx_rebuilds(self, deployed):
        (deployed.parent / "model.onnx").write_bytes(b"onnx graph v2")
        d = self.decide(deployed)
        assert d.action == "rebuild"
        one_sentence(d.reason, "SHA-256 changed")

    def test_missing_engine_with_sidecar_rebuilds(self, deployed):
        deployed.unlink()
        d = self.decide(deployed)
        assert d.action == "rebuild"
        one_sentence(d.reason, "does not exist")

    def test_another_onnx_asked_for_rebuilds(self, deployed):
        other = deployed.parent / "other.onnx"
        other.write_bytes(b"another graph")
        d = self.decide(deployed, onnx=other)
        assert d.action == "rebuild" and d.onnx == other

    def test_mismatch_without_onnx_fails_in_one_sentence(self, deployed):
        (deployed.parent / "model.onnx").unlink()
        d = self.decide(deployed, RuntimeInfo("11.4.0.106", "NVIDIA L4"))
        assert d.action == "fail"
        one_sentence(d.reason, "11.4.0.106", "NVIDIA L4", "model.onnx is gone", "export")

    def test_engine_without_sidecar_fails(self, deployed):
        sidecar_path(deployed).unlink()
        d = self.decide(deployed)
        assert d.action == "fail"
        one_sentence(d.reason, "no sidecar model.engine.json", "no ONNX is known")

    def test_engine_without_sidecar_but_with_an_onnx_rebuilds(self, deployed):
        sidecar_path(deployed).unlink()
        d = self.decide(deployed, onnx=deployed.parent / "model.onnx")
        assert d.action == "rebuild"


class TestEnsureEngine:
    """The paths of ``ensure_engine`` that never reach TensorRT."""

    def test_reuse_touches_nothing(self, deployed):
        before = sidecar_path(deployed).read_text()
        assert ensure_engine(deployed, HERE).action == "reuse"
        assert sidecar_path(deployed).read_text() == before
        assert deployed.read_bytes() == b"serialized engine"

    def test_fail_raises_the_reason(self, deployed):
        edit_sidecar(deployed, tensorrt="10.0.0")
        (deployed.parent / "model.onnx").unlink()
        with pytest.raises(InputError) as exc:
            ensure_engine(deployed, HERE)
        one_sentence(str(exc.value), "TensorRT 10.0.0", "cannot be rebuilt")
