"""Reading frames and masks from disk with one clear error per bad file.

PNG and JPEG files are checked in full before OpenCV decodes them
(:func:`instrument_seg.imagemsg.decode_compressed`): a truncated JPEG, which OpenCV would
return half grey with a libjpeg warning on stderr, and a corrupt PNG, which makes libpng print
a line of its own, are refused with one sentence naming the file and print nothing else.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from instrument_seg.errors import InputError
from instrument_seg.imagemsg import ImageFormatError, compressed_size, decode_compressed

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_HEADER_BYTES = 1 << 16  # enough for a PNG's header and most JPEG headers


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, ordered by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _is_png_or_jpeg(data: bytes) -> bool:
    return data[:8] == b"\x89PNG\r\n\x1a\n" or data[:2] == b"\xff\xd8"


def read_image(path: Path, what: str = "image") -> np.ndarray:
    """An image file decoded as OpenCV's ``IMREAD_UNCHANGED`` does (BGR, BGRA or grey).

    Args:
        path: the file.
        what: how the message names it (``image``, ``mask``).

    Raises:
        InputError: a missing, empty, truncated, corrupt or undecodable file, named.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if _is_png_or_jpeg(data):
        try:
            return decode_compressed(data)
        except ImageFormatError as exc:
            raise InputError(f"cannot read {what} {path}: {exc}") from exc
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if image is None:
        raise InputError(f"cannot read {what} {path} (missing, empty or not an image)")
    return image


def image_size(path: Path, what: str = "image") -> tuple[int, int] | None:
    """(H, W) of a PNG or JPEG file from its header (nothing decoded); None for other formats.

    Raises:
        InputError: a missing file, or a PNG / JPEG whose header is corrupt or truncated.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(_HEADER_BYTES)
            if not _is_png_or_jpeg(head):
                return None
            try:
                _, h, w = compressed_size(head)
            except ImageFormatError:
                if len(head) < _HEADER_BYTES:
                    raise
                _, h, w = compressed_size(head + f.read())  # a JPEG with a long header
    except OSError as exc:
        raise InputError(f"cannot read {what} {path} ({exc.strerror or exc})") from exc
    except ImageFormatError as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from exc
    return h, w


def read_rgb(path: Path) -> np.ndarray:
    """Reads an image file as uint8 RGB (H, W, 3); grey images are replicated to 3 channels."""
    image = read_image(path, "image")
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
    image = read_image(path, "mask")
    if image.ndim == 3:
        image = image.max(axis=2)
    return image > 0


def check_same_size(mask: np.ndarray, image_shape: tuple[int, ...], mask_path: Path) -> None:
    """Raises InputError when a mask does not match the (H, W) of its image."""
    check_sizes(mask.shape[:2], image_shape[:2], mask_path)


def check_sizes(mask_hw: tuple[int, ...], image_hw: tuple[int, ...], mask_path: Path) -> None:
    """Raises InputError when a mask's (H, W) is not its image's."""
    if tuple(mask_hw[:2]) != tuple(image_hw[:2]):
        raise InputError(
            f"mask {mask_path} is {mask_hw[0]}x{mask_hw[1]} but its image is "
            f"{image_hw[0]}x{image_hw[1]}"
        )


def check_mask_headers(pairs: list[tuple[Path, Path]]) -> None:
    """Checks that every mask has its image's size, from the files' headers (PNG / JPEG;
    other formats are checked when decoded), so that a command refuses a wrong-size mask
    before any work, even one that never reads the masks (``train``).

    Args:
        pairs: (image file, mask file) pairs.

    Raises:
        InputError: naming the first mask whose size differs from its image's.
    """
    for image, mask in pairs:
        mask_hw = image_size(mask, "mask")
        if mask_hw is None:
            continue
        image_hw = image_size(image, "image")
        if image_hw is not None:
            check_sizes(mask_hw, image_hw, mask)
