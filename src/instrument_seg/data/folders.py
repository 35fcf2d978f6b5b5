"""Generic layout: ``DIR/<sequence>/images/*`` with optional ``DIR/<sequence>/masks/*``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instrument_seg.data.base import Sequence
from instrument_seg.data.imageio import check_same_size, list_images, read_binary, read_rgb
from instrument_seg.errors import InputError


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
