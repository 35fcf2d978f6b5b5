"""EndoVis 2017 native layout (``instrument_dataset_N/left_frames`` + ``ground_truth``).

Frames are 1920x1080; the valid endoscope area is rows 28:1052 and columns 320:1600
(1280x1024). Binary ground truth is the union of every ``*_labels`` folder except ``Other``.
"""

from __future__ import annotations

from pathlib import Path

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

RAW_SHAPE = (1080, 1920)
CROP = (slice(28, 1052), slice(320, 1600))
EXCLUDED_LABELS = ("Other",)


def crop(image: np.ndarray) -> np.ndarray:
    """Crops a raw 1080x1920 EndoVis frame to the 1024x1280 endoscope area; others unchanged."""
    if image.shape[:2] == RAW_SHAPE:
        return image[CROP]
    return image


def label_folders(dataset_dir: Path) -> list[Path]:
    """The ``*_labels`` folders that count as instrument (all but ``Other``)."""
    gt = dataset_dir / "ground_truth"
    if not gt.is_dir():
        return []
    return sorted(
        p
        for p in gt.iterdir()
        if p.is_dir()
        and p.name.endswith("_labels")
        and not p.name.removesuffix("_labels").startswith(EXCLUDED_LABELS)
    )


class EndoVisSequence(Sequence):
    """One ``instrument_dataset_N`` folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = root.name
        self.images = list_images(root / "left_frames")
        if not self.images:
            raise InputError(f"no image files in {root / 'left_frames'}")
        self.labels = label_folders(root)
        for folder in self.labels:
            missing = [p.name for p in self.images if not (folder / p.name).is_file()]
            if missing:
                raise InputError(f"label folder {folder} has no label for frame {missing[0]}")
            check_mask_headers([(p, folder / p.name) for p in self.images])

    def __len__(self) -> int:
        return len(self.images)

    def frame_name(self, index: int) -> str:
        return self.images[index].stem

    def image(self, index: int) -> np.ndarray:
        return crop(read_rgb(self.images[index]))

    @property
    def has_masks(self) -> bool:
        return bool(self.labels)

    def mask(self, index: int) -> np.ndarray | None:
        if not self.labels:
            return None
        raw_shape = read_rgb(self.images[index]).shape
        union = np.zeros(raw_shape[:2], bool)
        for folder in self.labels:
            path = folder / self.images[index].name
            label = read_binary(path)
            check_same_size(label, raw_shape, path)
            union |= label
        return crop(union)


def is_endovis_sequence(path: Path) -> bool:
    return (path / "left_frames").is_dir()
