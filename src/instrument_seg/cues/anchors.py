"""Positive and negative anchors: element-wise fusion of the enabled cues."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

from instrument_seg.cues.maps import DEFAULT_CUES, check_cue_names
from instrument_seg.errors import InputError


def make_anchors(
    cues: Mapping[str, np.ndarray],
    enabled: Sequence[str] = DEFAULT_CUES,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``a_pos = prod(c)`` and ``a_neg = prod(1 - c)`` over the enabled cues (docs/method.md §2).

    Args:
        cues: maps in [0, 1], each (H, W), keyed by cue name.
        enabled: non-empty subset of :data:`instrument_seg.cues.maps.CUE_NAMES`.
        valid: optional bool (H, W) field of view: both anchors are 0 outside it (no
            supervision there, neither instrument nor background).

    Returns:
        ``(a_pos, a_neg)``, float32 (H, W) in [0, 1].
    """
    names = check_cue_names(enabled)
    missing = [n for n in names if n not in cues]
    if missing:
        raise InputError(f"cue '{missing[0]}' is enabled but was not computed")
    shapes = {cues[n].shape for n in names}
    if len(shapes) != 1:
        raise InputError(f"cue maps differ in shape: {sorted(shapes)}")
    a_pos = np.ones(shapes.pop(), np.float32)
    a_neg = np.ones_like(a_pos)
    for name in names:
        c = cues[name].astype(np.float32)
        a_pos *= c
        a_neg *= 1.0 - c
    if valid is not None:
        a_pos *= valid
        a_neg *= valid
    return a_pos, a_neg


def cue_combinations(names: Sequence[str] = DEFAULT_CUES) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``names``, singles first (the rows of Table 2)."""
    names = check_cue_names(names)
    return [c for k in range(1, len(names) + 1) for c in combinations(names, k)]
