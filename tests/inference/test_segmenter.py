"""Tests of instrument_seg.inference.Segmenter over its backends (torch, onnxruntime, and
TensorRT where it imports)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inference import support as tiny
from inference.support import one_sentence
from instrument_seg.errors import InputError
from instrument_seg.inference import Segmenter
from instrument_seg.inference.base import tensorrt_usable
from instrument_seg.inference.contract import ModelContract, sha256_file
from instrument_seg.inference.engine import read_sidecar, sidecar_path, write_sidecar

TRT = pytest.mark.skipif(not tensorrt_usable(), reason="tensorrt not importable / no CUDA")
NO_TRT = pytest.mark.skipif(tensorrt_usable(), reason="needs a machine without tensorrt")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Frames of three sizes: the model's, larger, and smaller with another aspect."""
    return [*tiny.frames(2), *tiny.frames(1, size=(120, 160), seed=5), tiny.frames(1)[0][:50, :70]]


class TestTorchBackend:
    def test_predict_shapes_types_ranges(self, tiny_run, frames):
        with Segmenter.from_path(tiny_run) as seg:
            assert seg.backend == "torch" and seg.input_size == (64, 80) and seg.device == "cpu"
            assert seg.model_path.endswith("checkpoint.pt")
            for rgb in frames:
                mask, prob = seg.predict(rgb)
                assert mask.shape == prob.shape == rgb.shape[:2]
                assert mask.dtype == np.uint8 and prob.dtype == np.float32
                assert set(np.unique(mask)) <= {0, 255}
                assert 0.0 <= prob.min() and prob.max() <= 1.0
                np.testing.assert_array_equal(seg.probability(rgb), prob)

    def test_batch_equals_single_frames(self, tiny_run, frames):
        with Segmenter.from_path(tiny_run, backend="torch", device="cpu") as seg:
            batch = seg.predict_batch(frames)
            for rgb, (mask, prob) in zip(frames, batch, strict=True):
                single_mask, single_prob = seg.predict(rgb)
                np.testing.assert_allclose(prob, single_prob, atol=1e-6)
                np.testing.assert_array_equal(mask, single_mask)

    def test_empty_batch(self, tiny_run):
        with Segmenter.from_path(tiny_run) as seg:
            assert seg.predict_batch([]) == []

    def test_threshold_choice(self, tiny_run, frames):
        with Segmenter.from_path(tiny_run, threshold=0.999) as seg:
            assert seg.threshold == {"method": "official", "value": 0.999, "min_area": 0.0}
            assert not seg.predict(frames[0])[0].any()
        with Segmenter.from_path(tiny_run) as seg:
            assert seg.threshold["method"] == "otsu"  # the checkpoint's config
            assert seg.predict(frames[0])[0].any()

    def test_other_input_size(self, tiny_run, frames):
        with Segmenter.from_path(tiny_run, input_size=(32, 40)) as seg:
            assert seg.input_size == (32, 40)
            assert seg.predict(frames[0])[1].shape == (64, 80)

    def test_closed(self, tiny_run, frames):
        seg = Segmenter.from_path(tiny_run)
        seg.close()
        seg.close()
        with pytest.raises(RuntimeError, match="closed"):
            seg.predict(frames[0])


class TestOnnxRuntimeBackend:
    def test_metadata_gives_the_contract(self, tiny_run, tiny_onnx):
        with Segmenter.from_path(tiny_onnx) as seg:
            assert seg.backend == "onnxruntime" and seg.device == "cpu"
            assert seg.model_path == str(tiny_onnx)
            assert seg.input_size == (64, 80) and seg.runner.max_batch is None
            assert seg.contract.checkpoint_sha256 == sha256_file(tiny_run / "checkpoint.pt")
            assert seg.contract.model_kwargs == {"width": 4, "depth": 2, "bilinear": False}

    def test_parity_with_torch(self, tiny_run, tiny_onnx, frames):
        with (
            Segmenter.from_path(tiny_run, backend="torch") as ref,
            Segmenter.from_path(tiny_onnx, backend="onnxruntime", threads=1) as seg,
        ):
            for (mask_t, prob_t), (mask_o, prob_o) in zip(
                ref.predict_batch(frames), seg.predict_batch(frames), strict=True
            ):
                np.testing.assert_allclose(prob_o, prob_t, rtol=0, atol=1e-5)
                np.testing.assert_array_equal(mask_o, mask_t)
                assert mask_t.any() and not mask_t.all()  # a real mask, not a trivial one

    def test_static_batch_runs_frame_by_frame(self, tiny_onnx, tiny_onnx_static, frames):
        with (
            Segmenter.from_path(tiny_onnx_static) as static,
            Segmenter.from_path(tiny_onnx) as dynamic,
        ):
            assert static.runner.max_batch == 1
            for (_, a), (_, b) in zip(
                static.predict_batch(frames), dynamic.predict_batch(frames), strict=True
            ):
                np.testing.assert_allclose(a, b, atol=1e-6)


def write_onnx(path: Path, shape: list, with_metadata: bool = True) -> Path:
    """A valid one-node ONNX file (Identity) with the given input shape."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["prob"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if with_metadata:
        contract = ModelContract(input_size=(64, 80), mean=(0.5,) * 3, std=(0.25,) * 3)
        for key, value in contract.to_metadata().items():
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


class TestBadInput:
    @pytest.mark.parametrize(
        ("name", "backend", "words"),
        [
            ("missing.onnx", "auto", ["missing.onnx", "does not exist"]),
            ("missing.engine", "auto", ["missing.engine", "does not exist"]),
            ("missing_run", "auto", ["no checkpoint", "missing_run"]),
            ("missing.pt", "torch", ["no checkpoint", "missing.pt"]),
        ],
    )
    def test_missing_model(self, tmp_path, name, backend, words):
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(tmp_path / name, backend=backend)
        one_sentence(str(exc.value), *words)

    @pytest.mark.parametrize(
        ("name", "words"),
        [
            ("bad.onnx", ["bad.onnx", "cannot be loaded as an ONNX model"]),
            ("bad.pt", ["bad.pt", "cannot be read"]),
        ],
    )
    def test_corrupt_model(self, tmp_path, name, words):
        (tmp_path / name).write_bytes(b"\x00garbage\xff" * 10)
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(tmp_path / name)
        one_sentence(str(exc.value), *words)

    @pytest.mark.parametrize(
        "shape", [["N", 1, 64, 80], ["N", 3, 64], ["N", 3, "H", "W"], [1, 64, 80, 3]]
    )
    def test_onnx_input_not_n3hw(self, tmp_path, shape):
        path = write_onnx(tmp_path / "wrong.onnx", shape)
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(path)
        one_sentence(str(exc.value), "wrong.onnx", "expected (N, 3, H, W)")

    def test_onnx_input_size_disagrees_with_metadata(self, tmp_path):
        path = write_onnx(tmp_path / "size.onnx", ["N", 3, 32, 32])
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(path)
        one_sentence(str(exc.value), "size.onnx", "32x32", "64x80")

    def test_onnx_from_elsewhere(self, tmp_path):
        path = write_onnx(tmp_path / "foreign.onnx", ["N", 3, 64, 80], with_metadata=False)
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(path)
        one_sentence(str(exc.value), "foreign.onnx", "instrument-seg export")

    @pytest.mark.parametrize(
        ("model", "backend", "words"),
        [
            ("onnx", "torch", ["torch backend needs a run directory", "model.onnx"]),
            ("run", "onnxruntime", ["onnxruntime backend needs an .onnx file", "run"]),
            ("run", "tensorrt", ["tensorrt"]),
            ("run", "openvino", ["unknown backend 'openvino'"]),
        ],
    )
    def test_backend_that_cannot_serve_the_file(self, tiny_run, tiny_onnx, model, backend, words):
        path = tiny_onnx if model == "onnx" else tiny_run
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(path, backend=backend)
        one_sentence(str(exc.value), *words)

    @NO_TRT
    def test_tensorrt_backend_without_tensorrt(self, tiny_onnx):
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(tiny_onnx, backend="tensorrt")
        one_sentence(str(exc.value), "tensorrt backend needs")

    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"threshold": 2}, ["threshold 2"]),
            ({"threshold": "mean"}, ["threshold 'mean'"]),
            ({"device": "tpu"}, ["device 'tpu'"]),
            ({"input_size": (30, 40)}, ["30x40", "multiple of 4"]),
        ],
    )
    def test_bad_options(self, tiny_run, kwargs, words):
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(tiny_run, **kwargs)
        one_sentence(str(exc.value), *words)

    def test_input_size_only_for_torch(self, tiny_onnx):
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(tiny_onnx, input_size=(32, 40))
        one_sentence(str(exc.value), "fixed by", "re-export")

    @pytest.mark.parametrize(
        ("image", "words"),
        [
            (np.zeros((64, 80, 3), np.float32), ["float32"]),
            (np.zeros((64, 80), np.uint8), ["(64, 80)"]),
            (np.zeros((64, 80, 4), np.uint8), ["(64, 80, 4)"]),
            (np.zeros((64, 0, 3), np.uint8), ["zero size"]),
        ],
    )
    def test_bad_images(self, tiny_onnx, image, words):
        with Segmenter.from_path(tiny_onnx) as seg, pytest.raises(InputError) as exc:
            seg.predict(image)
        one_sentence(str(exc.value), *words)


def fake_engine(folder: Path, onnx_name: str) -> Path:
    """An engine file TensorRT never built, with a sidecar naming ``onnx_name``: enough for
    the paths that must not reach TensorRT."""
    engine = folder / "model.engine"
    engine.write_bytes(b"not an engine")
    write_sidecar(
        engine,
        {
            "tensorrt": "10.13.3.9",
            "gpu": "NVIDIA H100 80GB HBM3",
            "onnx": onnx_name,
            "onnx_sha256": "0" * 64,
            "max_batch": 1,
            "contract": {},
        },
    )
    return engine


@NO_TRT
class TestEngineWithoutTensorRT:
    def test_auto_falls_back_to_the_sidecars_onnx(self, tiny_onnx, tmp_path, frames):
        shutil.copy(tiny_onnx, tmp_path / "model.onnx")
        engine = fake_engine(tmp_path, "model.onnx")
        with Segmenter.from_path(engine) as seg:
            assert seg.backend == "onnxruntime"
            assert seg.model_path == str(tmp_path / "model.onnx")
            assert seg.predict(frames[0])[0].shape == (64, 80)

    def test_auto_without_the_onnx(self, tmp_path):
        engine = fake_engine(tmp_path, "gone.onnx")
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(engine)
        one_sentence(str(exc.value), "gone.onnx", "is gone")

    def test_auto_without_a_sidecar(self, tmp_path):
        engine = fake_engine(tmp_path, "model.onnx")
        sidecar_path(engine).unlink()
        with pytest.raises(InputError) as exc:
            Segmenter.from_path(engine)
        one_sentence(str(exc.value), "model.engine", "no sidecar")


@TRT
class TestTensorRTBackend:
    """Real TensorRT engines; runs only where tensorrt imports and CUDA is visible."""

    def test_engine_parity_and_batch_profile(self, tiny_run, tiny_onnx, tmp_path, frames):
        from instrument_seg.inference.engine import build_engine

        engine = tmp_path / "model.engine"
        shutil.copy(tiny_onnx, tmp_path / "model.onnx")
        sidecar = build_engine(tmp_path / "model.onnx", engine, max_batch=4)
        assert sidecar["dynamic"] and sidecar["max_batch"] == 4
        with (
            Segmenter.from_path(tiny_run, device="cpu") as ref,
            Segmenter.from_path(engine) as seg,
        ):
            assert seg.backend == "tensorrt" and seg.runner.max_batch == 4
            for (_, p_ref), (_, p_trt) in zip(
                ref.predict_batch(frames), seg.predict_batch(frames * 2), strict=False
            ):
                np.testing.assert_allclose(p_trt, p_ref, atol=5e-3)  # TF32 may be on

    def test_fp16_export_and_engine(self, tiny_run, tmp_path, frames):
        from instrument_seg.inference.export import export

        result = export(
            tiny_run, tmp_path / "m.onnx", tmp_path / "m.engine", fp16=True, dynamic=True
        )
        assert read_sidecar(result.engine)["precision"] == "fp16"
        assert result.engine_max_abs_diff <= 2e-2
        with (
            Segmenter.from_path(tiny_run, device="cpu") as ref,
            Segmenter.from_path(result.engine) as seg,
        ):
            np.testing.assert_allclose(
                seg.probability(frames[0]), ref.probability(frames[0]), atol=2e-2
            )

    def test_sidecar_mismatch_rebuilds(self, tiny_onnx, tmp_path, frames):
        from instrument_seg.inference.engine import build_engine

        engine = tmp_path / "model.engine"
        shutil.copy(tiny_onnx, tmp_path / "model.onnx")
        build_engine(tmp_path / "model.onnx", engine)
        path = sidecar_path(engine)
        path.write_text(json.dumps({**json.loads(path.read_text()), "tensorrt": "0.0.0"}))
        with Segmenter.from_path(engine) as seg:
            seg.predict(frames[0])
        assert read_sidecar(engine)["tensorrt"] != "0.0.0"

    def test_onnx_with_tensorrt_backend_builds_an_engine_next_to_it(self, tiny_onnx, tmp_path):
        onnx_path = Path(shutil.copy(tiny_onnx, tmp_path / "net.onnx"))
        with Segmenter.from_path(onnx_path, backend="tensorrt") as seg:
            assert seg.model_path == str(tmp_path / "net.engine")
        assert read_sidecar(tmp_path / "net.engine") is not None
