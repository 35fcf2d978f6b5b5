"""Generic layout: ``DIR/<sequence>/images/*`` with optional ``DIR/<sequence>/masks/*``.

:class:`FolderSequence` reads one sequence of it; :func:`write_folders` writes sequences in it
(``images/<frame>.png`` and, for sequences with ground truth, ``masks/<frame>.png`` with 0 /
255 pixels), atomically: into a hidden sibling folder renamed to ``DIR`` at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from instrument_seg.data.base import Sequence
from instrument_seg.data.imageio import (
    check_mask_headers,
    check_same_size,
    list_images,
    read_binary,
    read_rgb,
)
from instrument_seg.errors import InputError
from instrument_seg.fileio import atomic_directory


class FolderSequence(Sequence):
    """Frames in ``root/images`` ordered by file name; masks matched by stem in ``root/masks``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = root.name
        self.images = list_images(root / "images")
        if not self.images:
            raise InputError(f"no image files in {root / 'images'}")
        self.masks: list[Path] | None = None
        mask_dir = root / "masks"
        if mask_dir.is_dir():
            by_stem = {p.stem: p for p in list_images(mask_dir)}
            missing = [p.name for p in self.images if p.stem not in by_stem]
            if missing:
                raise InputError(f"{mask_dir} has no mask for image {missing[0]}")
            self.masks = [by_stem[p.stem] for p in self.images]
            check_mask_headers(list(zip(self.images, self.masks, strict=True)))

    def __len__(self) -> int:
        return len(self.images)

    def frame_name(self, index: int) -> str:
        return self.images[index].stem

    def image(self, index: int) -> np.ndarray:
        return read_rgb(self.images[index])

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    def mask(self, index: int) -> np.ndarray | None:
        if self.masks is None:
            return None
        mask = read_binary(self.masks[index])
        image = read_rgb(self.images[index])
        check_same_size(mask, image.shape, self.masks[index])
        return mask


def is_generic_sequence(path: Path) -> bool:
    return (path / "images").is_dir()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class SequenceFrames(NamedTuple):
    """One sequence to write with :func:`write_folders`.

    Attributes:
        name: Folder name of the sequence.
        has_masks: Whether to create ``masks/`` (frames whose mask is None get no mask file).
        frames: ``(frame name, uint8 RGB (H, W, 3), mask (H, W) or None)`` per frame, in
            order; may be a generator (frames are written as they come). Any non-zero mask
            pixel is instrument.
    """

    name: str
    has_masks: bool
    frames: Iterable[tuple[str, np.ndarray, np.ndarray | None]]


def sequence_frames(seq: Sequence) -> SequenceFrames:
    """A sequence of any layout as :class:`SequenceFrames`, read lazily."""
    frames = ((seq.frame_name(i), seq.image(i), seq.mask(i)) for i in range(len(seq)))
    return SequenceFrames(seq.name, seq.has_masks, frames)


def check_output_folder(out: Path) -> None:
    """Raises InputError unless ``out`` is absent or an empty directory."""
    if out.is_dir():
        if any(out.iterdir()):
            raise InputError(f"output directory {out} is not empty; refusing to overwrite it")
    elif out.exists():
        raise InputError(f"output path {out} exists and is not a directory")


def write_folders(
    out: str | Path,
    sequences: Iterable[SequenceFrames],
    progress: Callable[[], None] | None = None,
) -> Path:
    """Writes ``out/<sequence>/images/<frame>.png`` (+ ``masks/<frame>.png``, 0 / 255).

    Everything goes to a hidden sibling folder first (:func:`instrument_seg.fileio.
    atomic_directory`), renamed to ``out`` at the end: a failure leaves nothing behind.

    Args:
        out: Folder to create; it may exist only if empty (see :func:`check_output_folder`,
            which callers run before any expensive work); its parent must exist.
        sequences: What to write, one :class:`SequenceFrames` per sequence.
        progress: Called once per frame written.

    Returns:
        ``out`` as a Path.

    Raises:
        InputError: ``out`` is unusable, or an image file cannot be written. Errors of the
            frame sources propagate unchanged.
    """
    out = Path(out)
    check_output_folder(out)
    with ExitStack() as stack:
        try:
            tmp = stack.enter_context(atomic_directory(out))
        except OSError as exc:
            raise InputError(f"cannot create output directory next to {out}: {exc}") from exc
        for seq in sequences:
            images = tmp / seq.name / "images"
            images.mkdir(parents=True)
            masks = tmp / seq.name / "masks"
            if seq.has_masks:
                masks.mkdir()
            for name, rgb, mask in seq.frames:
                file = f"{name}.png"
                _write_png(images / file, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "image")
                if mask is not None:
                    binary = (np.asarray(mask) > 0).astype(np.uint8) * np.uint8(255)
                    _write_png(masks / file, binary, "mask")
                if progress is not None:
                    progress()
        if out.exists():
            out.rmdir()  # empty, checked above
    return out


def _write_png(path: Path, image: np.ndarray, what: str) -> None:
    if not cv2.imwrite(str(path), image):
        raise InputError(f"could not write {what} file {path}")
