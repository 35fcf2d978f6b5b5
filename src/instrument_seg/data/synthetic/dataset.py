"""Synthetic sequences on disk, in the generic layout ``out/seq_00/{images,masks}/*.png``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from instrument_seg.data.folders import SequenceFrames, check_output_folder, write_folders
from instrument_seg.data.synthetic.config import MAX_SIDE, MIN_SIDE, SynthConfig, check_int
from instrument_seg.data.synthetic.render import iter_frames
from instrument_seg.errors import InputError

_FRAME_NAME = "frame_{:04d}"


def sequence_seed(seed: int, index: int) -> int:
    """The seed of sequence ``index`` in a dataset generated with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_dataset(
    out: str | Path,
    n_sequences: int,
    n_frames: int,
    size: tuple[int, int],
    seed: int,
    progress: bool = False,
) -> Path:
    """Write synthetic sequences in the generic layout ``out/seq_00/{images,masks}/*.png``.

    Everything is rendered into a hidden sibling directory first and renamed to ``out`` at the
    end, so a failure never leaves half a dataset behind.

    Args:
        out: Directory to create; it may exist only if it is empty.
        n_sequences: Number of sequences (>= 1).
        n_frames: Frames per sequence (>= 1).
        size: Frame size as ``(height, width)``, each 32..4096 px.
        seed: Non-negative seed; sequence ``k`` uses ``sequence_seed(seed, k)``.
        progress: Show a tqdm progress bar over all frames.

    Returns:
        ``out`` as a Path.

    Raises:
        InputError: For a bad count, size or seed, or if ``out`` exists and is not an empty
            directory.
    """
    out = Path(out)
    configs = _dataset_configs(n_sequences, n_frames, size, seed)
    check_output_folder(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory next to {out}: {exc}") from exc
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(c.n_frames for c in configs), desc="synthetic", unit="frame")
    width = max(2, len(str(len(configs) - 1)))
    sequences = (
        SequenceFrames(f"seq_{k:0{width}d}", True, _named_frames(cfg))
        for k, cfg in enumerate(configs)
    )
    try:
        return write_folders(out, sequences, None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()


def _named_frames(cfg: SynthConfig) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for i, (frame, mask) in enumerate(iter_frames(cfg)):
        yield _FRAME_NAME.format(i), frame, mask


def _dataset_configs(
    n_sequences: int, n_frames: int, size: tuple[int, int], seed: int
) -> list[SynthConfig]:
    check_int("n_sequences", n_sequences, 1, None)
    check_int("n_frames", n_frames, 1, None)
    check_int("seed", seed, 0, None)
    if not isinstance(size, tuple | list) or len(size) != 2:
        raise InputError(f"size={size!r} must be a (height, width) pair")
    for name, value in zip(("height", "width"), size, strict=True):
        if not isinstance(value, int | np.integer) or not MIN_SIDE <= value <= MAX_SIDE:
            raise InputError(
                f"size={tuple(size)!r} has {name} {value!r}, outside {MIN_SIDE}..{MAX_SIDE} px"
            )
    height, width = (int(v) for v in size)
    return [
        SynthConfig(height=height, width=width, n_frames=n_frames, seed=sequence_seed(seed, k))
        for k in range(n_sequences)
    ]
