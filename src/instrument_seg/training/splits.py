"""Which sequences a run trains and tests on: the paper's SS and TT settings and their folds.

SS (same sequences) learns and infers on every sequence, as unsupervised learning allows; TT
(train/test) holds out one fold. On EndoVis 2017 the folds are the paper's {1,3}, {2,5}, {4,8},
{6,7} (by ``instrument_dataset_N``); elsewhere sequence ``k`` (in name order) is in fold
``k % n_folds``.
"""

from __future__ import annotations

from instrument_seg.data import Dataset
from instrument_seg.errors import InputError

SETTINGS = ("ss", "tt")
ENDOVIS_FOLDS = ((1, 3), (2, 5), (4, 8), (6, 7))


def _endovis_number(name: str) -> int | None:
    prefix = "instrument_dataset_"
    number = name.removeprefix(prefix)
    return int(number) if name.startswith(prefix) and number.isdigit() else None


def split_sequences(
    dataset: Dataset, setting: str, fold: int | None, n_folds: int = 4
) -> tuple[list[int], list[int]]:
    """Indices of the training and test sequences.

    Args:
        dataset: The sequences to split.
        setting: ``"ss"`` (train and test on everything) or ``"tt"`` (hold out ``fold``).
        fold: The TT fold to test on: 0-3 on EndoVis 2017, else ``0 .. n_folds - 1`` (ignored
            for SS).
        n_folds: Folds of a non-EndoVis dataset (``train.n_folds``).

    Returns:
        ``(train, test)`` sequence indices into ``dataset.sequences``.

    Raises:
        InputError: unknown setting, fold out of range, or an empty side of the split.
    """
    if setting not in SETTINGS:
        raise InputError(f"unknown setting '{setting}' (valid: {', '.join(SETTINGS)})")
    everything = list(range(len(dataset.sequences)))
    if setting == "ss":
        return everything, everything
    numbers = [_endovis_number(s.name) for s in dataset.sequences]
    endovis = all(n is not None for n in numbers)
    count = len(ENDOVIS_FOLDS) if endovis else n_folds
    if fold is None or not 0 <= fold < count:
        raise InputError(f"fold {fold} is not valid for setting tt (use 0..{count - 1})")
    if endovis:
        test = [k for k, n in enumerate(numbers) if n in ENDOVIS_FOLDS[fold]]
    else:
        test = [k for k in everything if k % n_folds == fold]
    train = [k for k in everything if k not in test]
    if not test:
        raise InputError(f"fold {fold} of {dataset.root} holds no sequence to test on")
    if not train:
        raise InputError(f"fold {fold} leaves no sequence of {dataset.root} to train on")
    return train, test


def subset(dataset: Dataset, indices: list[int]) -> Dataset:
    """The dataset of the sequences ``indices`` (same root and layout)."""
    return Dataset(dataset.root, [dataset.sequences[k] for k in indices], dataset.layout)
