"""Tests of training.trainset: anchors or ground truth, pairs, features and the input contract."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from instrument_seg.config import load_config
from instrument_seg.cues.anchors import make_anchors
from instrument_seg.cues.pipeline import dataset_cues
from instrument_seg.data import load_dataset
from instrument_seg.errors import InputError
from instrument_seg.imaging import resize_mask
from instrument_seg.model.contract import NORM_MEAN, NORM_STD
from instrument_seg.training.trainset import build_training_set, to_input

#: Working size of the tests: the 48x64 fixture frames are upsampled, non-integer factors.
SIZE = (64, 80)


def _config(supervision: int = 0, still: bool = False) -> dict:
    return load_config(
        overrides=[
            f"data.size=[{SIZE[0]},{SIZE[1]}]",
            f"train.supervision={supervision}",
            f"data.still_images={str(still).lower()}",
            "cues.cache_dir=null",
            "cues.workers=1",
        ]
    )


class TestBuildTrainingSet:
    def test_full_supervision_uses_the_nearest_resized_ground_truth(
        self, generic_tree: Path
    ) -> None:
        dataset = load_dataset(generic_tree)
        data = build_training_set(dataset, _config(supervision=100), features=None)
        refs = [(seq, i) for seq in dataset.sequences for i in range(len(seq))]
        assert data.a_pos.shape == data.a_neg.shape == (len(refs), *SIZE)
        assert data.a_pos.dtype == np.float32
        bilinear_differs = []
        for k, (seq, i) in enumerate(refs):
            gt = seq.mask(i)
            expected = resize_mask(gt, SIZE).astype(np.float32)
            np.testing.assert_array_equal(data.a_pos[k], expected)
            np.testing.assert_array_equal(data.a_neg[k], 1.0 - expected)
            linear = cv2.resize(gt.astype(np.uint8), SIZE[::-1], interpolation=cv2.INTER_LINEAR)
            bilinear_differs.append(not np.array_equal(linear > 0, expected > 0))
        # A bilinear resize (e.g. the interpolation flag passed as cv2.resize's ``dst``) changes
        # these masks, so the comparison above tells the two apart.
        assert any(bilinear_differs)

    def test_half_supervision_replaces_even_frames_of_each_sequence(
        self, generic_tree: Path
    ) -> None:
        dataset = load_dataset(generic_tree)
        config = _config(supervision=50)
        data = build_training_set(dataset, config, features=None)
        cues = dataset_cues(dataset, config, with_gt=True)
        k = 0
        for seq in dataset.sequences:
            for i in range(len(seq)):
                if i % 2 == 0:
                    expected = resize_mask(seq.mask(i), SIZE).astype(np.float32)
                else:
                    expected, _ = make_anchors(cues[k].cues, config["cues"]["enabled"])
                np.testing.assert_array_equal(data.a_pos[k], expected)
                k += 1

    def test_unsupervised_anchors_and_adjacent_pairs(self, generic_tree: Path) -> None:
        dataset = load_dataset(generic_tree)  # seq_a: 3 frames, seq_b: 2
        config = _config()
        data = build_training_set(dataset, config, features=None)
        cues = dataset_cues(dataset, config, with_gt=False)
        for k, fc in enumerate(cues):
            a_pos, a_neg = make_anchors(fc.cues, config["cues"]["enabled"])
            np.testing.assert_array_equal(data.a_pos[k], a_pos)
            np.testing.assert_array_equal(data.a_neg[k], a_neg)
        np.testing.assert_array_equal(data.pairs, [[0, 1], [1, 2], [3, 4]])
        assert data.pairs.dtype == np.int64
        assert data.frames.shape == (5, *SIZE, 3) and data.frames.dtype == np.uint8
        assert data.feats is None
        assert data.names[3] == ("seq_b", data.names[3][1])

    def test_still_images_pair_each_frame_with_another(self, generic_tree: Path) -> None:
        data = build_training_set(load_dataset(generic_tree), _config(still=True), None)
        assert len(data.pairs) == 5
        assert all(a != b for a, b in data.pairs)
        again = build_training_set(load_dataset(generic_tree), _config(still=True), None)
        np.testing.assert_array_equal(again.pairs, data.pairs)  # seeded by ``seed``

    def test_bad_supervision(self, generic_tree: Path) -> None:
        with pytest.raises(InputError, match=r"train.supervision must be one of \(0, 50, 100\)"):
            build_training_set(load_dataset(generic_tree), _config(supervision=30), None)

    def test_supervision_needs_masks(self, generic_tree: Path) -> None:
        for path in (generic_tree / "seq_b" / "masks").iterdir():
            path.unlink()
        (generic_tree / "seq_b" / "masks").rmdir()
        with pytest.raises(InputError, match="needs ground-truth masks"):
            build_training_set(load_dataset(generic_tree), _config(supervision=100), None)

    def test_precomputed_cues_of_another_dataset(self, generic_tree: Path) -> None:
        dataset = load_dataset(generic_tree)
        cues = dataset_cues(dataset, _config(), with_gt=False)
        with pytest.raises(InputError, match="4 precomputed cue sets for 5 frames"):
            build_training_set(dataset, _config(), None, frame_cues=cues[:4])


class TestToInput:
    def test_contract(self) -> None:
        frames = np.random.default_rng(0).integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
        x = to_input(frames)
        assert x.shape == (2, 3, 4, 6) and x.dtype == torch.float32
        expected = (frames / 255.0 - np.array(NORM_MEAN)) / np.array(NORM_STD)
        np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), expected, rtol=1e-5, atol=1e-6)
