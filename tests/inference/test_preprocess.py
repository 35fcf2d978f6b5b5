"""Tests of instrument_seg.inference.preprocess and .contract: the shared pre/post-processing."""

from __future__ import annotations

import numpy as np
import pytest

from inference.support import one_sentence
from instrument_seg.config import load_config
from instrument_seg.errors import InputError
from instrument_seg.inference.contract import ModelContract
from instrument_seg.inference.preprocess import (
    check_image,
    normalize,
    prepare,
    resolve_threshold,
    restore,
    to_mask,
)
from instrument_seg.model.contract import NORM_MEAN, NORM_STD
from instrument_seg.training.trainset import to_input

CONTRACT = ModelContract(input_size=(32, 48), mean=NORM_MEAN, std=NORM_STD)
DEFAULT = {"method": "otsu", "value": 0.6, "min_area": 10000.0}


class TestNormalize:
    def test_identical_to_training_input(self):
        frames = np.random.default_rng(0).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
        x = normalize(frames, CONTRACT)
        assert x.shape == (2, 3, 32, 48) and x.dtype == np.float32 and x.flags.c_contiguous
        np.testing.assert_array_equal(x, to_input(frames).numpy())

    def test_prepare_resizes_any_size_to_the_model(self):
        rgb = np.full((100, 30, 3), 200, np.uint8)
        x = prepare([rgb, rgb[:50]], CONTRACT)
        assert x.shape == (2, 3, 32, 48)
        expected = (200 / 255 - np.asarray(NORM_MEAN)) / np.asarray(NORM_STD)
        np.testing.assert_allclose(x[1, :, 5, 5], expected, rtol=1e-6)

    def test_empty_batch(self):
        with pytest.raises(InputError) as exc:
            prepare([], CONTRACT)
        one_sentence(str(exc.value), "empty batch")


class TestCheckImage:
    @pytest.mark.parametrize(
        ("image", "words"),
        [
            (np.zeros((8, 8, 3), np.float32), ["float32", "uint8"]),
            (np.zeros((8, 8), np.uint8), ["(8, 8)", "(H, W, 3)"]),
            (np.zeros((8, 8, 4), np.uint8), ["(8, 8, 4)"]),
            (np.zeros((0, 8, 3), np.uint8), ["zero size"]),
            ([[1, 2, 3]], ["numpy array", "list"]),
        ],
    )
    def test_bad_images(self, image, words):
        with pytest.raises(InputError) as exc:
            check_image(image)
        one_sentence(str(exc.value), *words)

    def test_batch_names_the_bad_frame(self):
        good = np.zeros((8, 8, 3), np.uint8)
        with pytest.raises(InputError) as exc:
            prepare([good, good.astype(np.uint16)], CONTRACT)
        one_sentence(str(exc.value), "frame 1", "uint16")


class TestRestoreAndMask:
    def test_back_to_frame_size_and_clipped(self):
        prob = np.linspace(-0.5, 1.5, 32 * 48, dtype=np.float32).reshape(32, 48)
        out = restore(prob, (64, 96))
        assert out.shape == (64, 96) and out.dtype == np.float32
        assert out.min() == 0.0 and out.max() == 1.0

    def test_mask_is_0_255_uint8(self):
        prob = np.zeros((20, 20), np.float32)
        prob[5:15, 5:15] = 0.9
        mask = to_mask(prob, DEFAULT)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
        assert (mask == 255).sum() == 100


class TestResolveThreshold:
    def test_default_is_the_models(self):
        stored = {"method": "official", "value": 0.7, "min_area": 500.0}
        assert resolve_threshold(None, stored) == stored

    @pytest.mark.parametrize("name", ["otsu", "official", " OTSU "])
    def test_method_names_keep_the_models_values(self, name):
        stored = {"method": "otsu", "value": 0.7, "min_area": 500.0}
        got = resolve_threshold(name, stored)
        assert got == {**stored, "method": name.strip().lower()}

    @pytest.mark.parametrize("value", [0.3, "0.3"])
    def test_number_is_a_fixed_threshold_without_area_filter(self, value):
        assert resolve_threshold(value, DEFAULT) == {
            "method": "official",
            "value": 0.3,
            "min_area": 0.0,
        }

    @pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, float("nan"), "median", True, [0.5]])
    def test_bad_thresholds(self, value):
        with pytest.raises(InputError) as exc:
            resolve_threshold(value, DEFAULT)
        one_sentence(str(exc.value), "threshold", repr(value))


class TestContract:
    def test_metadata_round_trip(self):
        contract = ModelContract(
            input_size=(64, 80),
            mean=(0.1, 0.2, 0.3),
            std=(0.4, 0.5, 0.6),
            threshold={"method": "official", "value": 0.55, "min_area": 123.0},
            model_kwargs={"width": 4, "depth": 2, "bilinear": False},
            checkpoint="/x/checkpoint.pt",
            checkpoint_sha256="ab" * 32,
            setting="tt",
            fold=1,
            test_sequences=("seq_01",),
            config=load_config(overrides=["seed=3"]),
            precision="fp16",
        )
        metadata = contract.to_metadata()
        assert all(isinstance(v, str) for v in metadata.values())
        assert ModelContract.from_metadata(metadata, "m.onnx") == contract

    def test_config_of_an_older_version_is_completed(self):
        old = ModelContract(**{**CONTRACT.__dict__, "config": {"seed": 3, "gone": 1}})
        back = ModelContract.from_metadata(old.to_metadata(), "old.onnx")
        assert back.config == load_config(overrides=["seed=3"])

    def test_foreign_metadata(self):
        with pytest.raises(InputError) as exc:
            ModelContract.from_metadata({"author": "someone"}, "other.onnx")
        one_sentence(str(exc.value), "other.onnx", "no instrument_seg metadata")

    def test_broken_metadata(self):
        metadata = CONTRACT.to_metadata()
        metadata["input_size"] = "[64]"
        with pytest.raises(InputError) as exc:
            ModelContract.from_metadata(metadata, "m.onnx")
        one_sentence(str(exc.value), "m.onnx", "unreadable")
