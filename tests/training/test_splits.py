"""Tests of training.splits: the SS and TT settings and their folds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from instrument_seg.data import Dataset
from instrument_seg.errors import InputError
from instrument_seg.training.splits import ENDOVIS_FOLDS, split_sequences, subset


@dataclass
class _Seq:
    name: str


def _dataset(*names: str) -> Dataset:
    return Dataset("root", [_Seq(n) for n in names], "generic")  # type: ignore[list-item]


class TestSplitSequences:
    def test_ss_trains_and_tests_on_everything(self) -> None:
        assert split_sequences(_dataset("a", "b", "c"), "ss", None) == ([0, 1, 2], [0, 1, 2])

    def test_tt_generic_folds_by_position(self) -> None:
        dataset = _dataset(*"abcdef")
        assert split_sequences(dataset, "tt", 1, n_folds=4) == ([0, 2, 3, 4], [1, 5])
        assert split_sequences(dataset, "tt", 0, n_folds=2) == ([1, 3, 5], [0, 2, 4])

    def test_tt_endovis_uses_the_paper_folds(self) -> None:
        dataset = _dataset(*(f"instrument_dataset_{n}" for n in range(1, 9)))
        for fold, held_out in enumerate(ENDOVIS_FOLDS):
            train, test = split_sequences(dataset, "tt", fold, n_folds=2)  # n_folds ignored
            assert [k + 1 for k in test] == list(held_out)
            assert sorted(train + test) == list(range(8))

    @pytest.mark.parametrize(
        ("setting", "fold", "words"),
        [("xx", None, "unknown setting 'xx'"), ("tt", None, "fold None"), ("tt", 4, "0..3")],
    )
    def test_bad_setting_or_fold(self, setting: str, fold: int | None, words: str) -> None:
        with pytest.raises(InputError, match=words):
            split_sequences(_dataset(*"abcd"), setting, fold)

    def test_empty_side(self) -> None:
        with pytest.raises(InputError, match="holds no sequence to test on"):
            split_sequences(_dataset("a", "b"), "tt", 3)
        with pytest.raises(InputError, match="leaves no sequence of root to train on"):
            split_sequences(_dataset("a"), "tt", 0, n_folds=1)


def test_subset_keeps_root_and_layout() -> None:
    part = subset(_dataset("a", "b", "c"), [2, 0])
    assert [s.name for s in part.sequences] == ["c", "a"]
    assert (part.root, part.layout) == ("root", "generic")
