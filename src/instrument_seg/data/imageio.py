"""Reading frames and masks from disk with one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from instrument_seg.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, ordered by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: Path) -> np.ndarray:
    """Reads an image file as uint8 RGB (H, W, 3); grey images are replicated to 3 channels."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"cannot read image {path} (missing, empty or not an image)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise InputError(f"image {path} has unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_binary(path: Path) -> np.ndarray:
    """Reads a label image as a bool (H, W) map: any non-zero pixel is foreground."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"cannot read mask {path} (missing, empty or not an image)")
    if image.ndim == 3:
        image = image.max(axis=2)
    return image > 0


def check_same_size(mask: np.ndarray, image_shape: tuple[int, ...], mask_path: Path) -> None:
    """Raises InputError when a mask does not match the (H, W) of its image."""
    if mask.shape[:2] != tuple(image_shape[:2]):
        h, w = mask.shape[:2]
        raise InputError(
            f"mask {mask_path} is {h}x{w} but its image is {image_shape[0]}x{image_shape[1]}"
        )
