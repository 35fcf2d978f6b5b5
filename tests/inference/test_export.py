"""Tests of inference.export: checkpoint -> verified ONNX with the contract as metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from inference import support
from inference.support import one_sentence, write_run
from instrument_seg.errors import InputError
from instrument_seg.inference import export as export_module
from instrument_seg.inference.base import tensorrt_usable
from instrument_seg.inference.contract import ModelContract, sha256_file
from instrument_seg.inference.export import ExportError, export, export_graph, fp16_path
from instrument_seg.model.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/inference/conftest.py
    yield support.write_run(tmp_path_factory.mktemp("export") / "run")
    torch.set_num_threads(before)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


class TestExport:
    def test_metadata_round_trip(self, run, tmp_path):
        result = export(run, tmp_path / "m.onnx")
        model = onnx.load(str(result.onnx))
        metadata = {p.key: p.value for p in model.metadata_props}
        contract = ModelContract.from_metadata(metadata, result.onnx)
        expected = ModelContract.from_checkpoint(load_checkpoint(run))
        assert contract == expected
        assert contract.checkpoint_sha256 == sha256_file(run / "checkpoint.pt")
        assert contract.channel_order == "RGB" and contract.precision == "fp32"
        assert contract.threshold == {"method": "otsu", "value": 0.6, "min_area": 10000.0}
        assert metadata["layout"] == '"NCHW"'

    def test_graph_opset_names_and_static_shape(self, run, tmp_path):
        result = export(run, tmp_path / "m.onnx")
        model = onnx.load(str(result.onnx))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        (inp,), (out,) = model.graph.input, model.graph.output
        dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
        assert (inp.name, out.name, dims) == ("input", "prob", [1, 3, 64, 80])
        assert 0 <= result.max_abs_diff <= export_module.ONNX_ATOL
        assert result.frames == 2 and leftovers(tmp_path) == []

    def test_dynamic_batch_and_other_input_size(self, run, tmp_path):
        result = export(run, tmp_path / "m.onnx", input_size=(32, 48), dynamic=True)
        inp = onnx.load(str(result.onnx)).graph.input[0]
        dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
        assert dims == ["batch", 3, 32, 48]
        assert result.input_size == (32, 48)

    def test_default_size_is_the_inference_size(self, tmp_path):
        run = write_run(tmp_path / "run", size=(32, 48), steps=2, scale=2)
        payload = load_checkpoint(run)
        h, w = payload["input_size"]
        assert payload["inference_size"] == [2 * h, 2 * w]  # model.inference_scale: 2
        assert export(run, tmp_path / "m.onnx").input_size == (2 * h, 2 * w)
        del payload["inference_size"]  # a checkpoint from before the key runs at its own size
        assert ModelContract.from_checkpoint(payload).input_size == (h, w)

    def test_fp16_graph(self, run):
        payload = load_checkpoint(run)
        contract = ModelContract.from_checkpoint(payload)
        from instrument_seg.inference.export import Probabilities, verification_frames
        from instrument_seg.inference.preprocess import prepare
        from instrument_seg.model.checkpoint import model_from_checkpoint

        model = model_from_checkpoint(payload)
        x = prepare(verification_frames(contract.input_size), contract)
        reference = Probabilities(model)(torch.from_numpy(x)).detach().numpy()
        data, diff = export_graph(model, contract, True, x, reference, half=True)
        graph = onnx.load_from_string(data)
        assert {p.key: p.value for p in graph.metadata_props}["precision"] == '"fp16"'
        weights = [numpy_helper.to_array(t) for t in graph.graph.initializer if t.dims]
        assert any(w.dtype == np.float16 for w in weights)
        io = [graph.graph.input[0], graph.graph.output[0]]
        assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)
        assert 0 < diff <= export_module.FP16_ATOL
        assert fp16_path(Path("a/model.onnx")) == Path("a/model.fp16.onnx")


class TestVerification:
    def test_a_graph_that_differs_from_pytorch_is_refused(self, run, tmp_path, monkeypatch):
        """An exporter that gets one weight slightly wrong: loud failure, no file."""
        real = export_module.onnx_bytes

        def skewed(*args, **kwargs):
            model = onnx.load_from_string(real(*args, **kwargs))
            weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
            weight.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(weight) * 1.05, weight.name)
            )
            return model.SerializeToString()

        monkeypatch.setattr(export_module, "onnx_bytes", skewed)
        target = tmp_path / "m.onnx"
        target.write_bytes(b"the previous export")
        with pytest.raises(ExportError) as exc:
            export(run, target)
        one_sentence(str(exc.value), "does not match PyTorch", "nothing was written")
        assert target.read_bytes() == b"the previous export"
        assert leftovers(tmp_path) == []

    def test_tolerance_is_enforced(self, run, tmp_path, monkeypatch):
        monkeypatch.setattr(export_module, "ONNX_ATOL", -1.0)
        with pytest.raises(ExportError):
            export(run, tmp_path / "m.onnx")
        assert list(tmp_path.iterdir()) == []


class TestBadInput:
    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"input_size": (30, 40)}, ["30x40", "multiple of 4"]),
            ({"fp16": True}, ["--fp16", "--engine"]),
            ({"opset": 16}, ["opset", "16"]),
            ({"max_batch": 0}, ["max batch", "0"]),
        ],
    )
    def test_bad_options_write_nothing(self, run, tmp_path, kwargs, words):
        with pytest.raises(InputError) as exc:
            export(run, tmp_path / "m.onnx", **kwargs)
        one_sentence(str(exc.value), *words)
        assert list(tmp_path.iterdir()) == []

    def test_missing_checkpoint(self, tmp_path):
        with pytest.raises(InputError) as exc:
            export(tmp_path / "nope", tmp_path / "m.onnx")
        one_sentence(str(exc.value), "no checkpoint", "nope")

    def test_missing_output_directory(self, run, tmp_path):
        with pytest.raises(InputError) as exc:
            export(run, tmp_path / "no" / "m.onnx")
        one_sentence(str(exc.value), "directory", "does not exist")

    @pytest.mark.skipif(tensorrt_usable(), reason="needs a machine without tensorrt")
    def test_engine_without_tensorrt_writes_nothing(self, run, tmp_path):
        with pytest.raises(InputError) as exc:
            export(run, tmp_path / "m.onnx", tmp_path / "m.engine")
        one_sentence(str(exc.value), "tensorrt")
        assert list(tmp_path.iterdir()) == []

    def test_a_copied_run_exports_the_same_contract(self, run, tmp_path):
        copy = Path(shutil.copytree(run, tmp_path / "copy"))
        result = export(copy, tmp_path / "m.onnx")
        meta = {p.key: p.value for p in onnx.load(str(result.onnx)).metadata_props}
        contract = ModelContract.from_metadata(meta, result.onnx)
        assert contract.checkpoint == "checkpoint.pt"
        assert contract.checkpoint_sha256 == sha256_file(run / "checkpoint.pt")

    def test_no_path_of_the_exporting_machine_in_the_metadata(self, run, tmp_path):
        """Only the checkpoint's file name and SHA-256 identify it: no folder of this machine."""
        copy = Path(shutil.copytree(run, tmp_path / "hospital_x_run"))
        result = export(copy, tmp_path / "m.onnx")
        meta = {p.key: p.value for p in onnx.load(str(result.onnx)).metadata_props}
        assert json.loads(meta["checkpoint"]) == "checkpoint.pt"
        assert json.loads(meta["checkpoint_sha256"]) == sha256_file(copy / "checkpoint.pt")
        for value in meta.values():
            assert "hospital_x_run" not in value and str(tmp_path) not in value

    def test_older_metadata_with_an_absolute_path_still_reads(self, run, tmp_path):
        result = export(run, tmp_path / "m.onnx")
        meta = {p.key: p.value for p in onnx.load(str(result.onnx)).metadata_props}
        meta["checkpoint"] = json.dumps("/old/machine/run/checkpoint.pt")
        contract = ModelContract.from_metadata(meta, result.onnx)
        assert contract.checkpoint == "/old/machine/run/checkpoint.pt"
