"""Tests of training.augment: one draw per pair, geometry shared by every aligned map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instrument_seg.errors import InputError
from instrument_seg.training.augment import Augmentation, jitter, warp

IDENTITY = {
    "side": 1.0,
    "tx": 0.0,
    "ty": 0.0,
    "flip": 0.0,
    "brightness": 1.0,
    "contrast": 1.0,
    "saturation": 1.0,
    "hue": 0.0,
}


class TestAugmentation:
    def test_from_config_and_draws(self):
        aug = Augmentation.from_config(
            {
                "enabled": True,
                "crop_scale": [0.85, 1.0],
                "flip": 0.5,
                "jitter": [0.1, 0.1, 0.01, 0.01],
            }
        )
        draws = aug.draw(np.random.default_rng(0), 200)
        sides = np.array([d["side"] ** 2 for d in draws])
        assert sides.min() >= 0.85 - 1e-9 and sides.max() <= 1.0
        assert all(abs(d["tx"]) <= 1 - d["side"] + 1e-9 for d in draws)
        assert 0.3 < np.mean([d["flip"] for d in draws]) < 0.7
        assert aug.draw(np.random.default_rng(0), 3) == aug.draw(np.random.default_rng(0), 3)

    def test_bad_config(self):
        with pytest.raises(InputError, match="train.augment"):
            Augmentation.from_config(
                {"enabled": True, "crop_scale": [1.2, 1.0], "flip": 0.5, "jitter": [0, 0, 0, 0]}
            )
        with pytest.raises(InputError, match="train.augment needs"):
            Augmentation.from_config(
                {"enabled": True, "crop_scale": "x", "flip": 0.5, "jitter": [0, 0, 0, 0]}
            )

    def test_identity_warp_and_jitter(self):
        x = torch.rand(2, 3, 8, 12)
        torch.testing.assert_close(warp(x, [IDENTITY, IDENTITY]), x)
        torch.testing.assert_close(jitter(x, [IDENTITY, IDENTITY]), x, atol=1e-5, rtol=0)

    def test_flip_and_crop_move_every_map_alike(self):
        """A frame and a map aligned with it stay aligned after the warp, at any resolution."""
        fine = torch.zeros(1, 1, 32, 48)
        fine[..., 8:16, 4:12] = 1.0  # a block in the top left
        coarse = torch.nn.functional.avg_pool2d(fine, 4)
        p = {**IDENTITY, "flip": 1.0}
        flipped = warp(fine, [p], "nearest")
        torch.testing.assert_close(flipped, fine.flip(-1))
        crop = {**IDENTITY, "side": 0.5, "tx": -0.5, "ty": -0.5}  # the top-left quarter
        big = warp(fine, [crop], "nearest")
        assert big[..., 16:32, 8:24].mean() > 0.9 and big.mean() < 0.3
        small = warp(coarse, [crop])
        pooled = torch.nn.functional.avg_pool2d(big, 4)
        assert (pooled - small).abs().mean() < 0.08  # bilinear vs nearest edges only

        def centroid(m):
            ys, xs = torch.meshgrid(
                torch.arange(m.shape[-2]), torch.arange(m.shape[-1]), indexing="ij"
            )
            w = m[0, 0]
            return float((ys * w).sum() / w.sum()), float((xs * w).sum() / w.sum())

        (cy, cx), (sy, sx) = centroid(pooled), centroid(small)
        assert abs(cy - sy) < 0.3 and abs(cx - sx) < 0.3

    def test_jitter_stays_in_range(self):
        x = torch.rand(3, 3, 5, 5)
        draws = Augmentation(True).draw(np.random.default_rng(1), 3)
        y = jitter(x, draws)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        assert not torch.allclose(x, y)
