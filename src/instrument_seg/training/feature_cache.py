"""Frozen features computed once per frame: :func:`extract_features` and :class:`FeatureCache`.

Training visits every frame many times; its relu5_3 features
(:class:`~instrument_seg.training.features.VGG16Features`) are computed on the first visit and
kept in memory and, optionally, on disk.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch

from instrument_seg.errors import InputError, check_rgb
from instrument_seg.fileio import atomic_path
from instrument_seg.training.features import STRIDE, VGG16Features


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) <= 0 or int(s) % STRIDE for s in size):
        raise InputError(f"feature input size {tuple(size)} must be two positive multiples of 16.")
    return int(size[0]), int(size[1])


def extract_features(
    model: VGG16Features, rgb_uint8: np.ndarray, size: tuple[int, int]
) -> torch.Tensor:
    """Resizes one frame and computes its relu5_3 features.

    Args:
        model: The frozen extractor (its device is used).
        rgb_uint8: (H, W, 3) uint8 RGB frame.
        size: (h, w) the frame is resized to (``cv2.INTER_AREA``); multiples of 16.

    Returns:
        (512, h/16, w/16) float32 features on the CPU.

    Raises:
        InputError: Bad frame or size.
    """
    check_rgb(rgb_uint8, "frame")
    h, w = _check_size(size)
    frame = rgb_uint8
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(frame)).to(device)
    x = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    with torch.no_grad():
        feats = model(x)
    return feats[0].float().cpu()


class FeatureCache:
    """Features computed once per frame and reused (training visits each frame many times).

    The key is ``sha1(frame shape + frame bytes + source_name + size)``. Entries live in memory
    (optionally bounded, least recently used evicted) and, when ``cache_dir`` is given, in
    ``<cache_dir>/<key>.npy`` files stored as ``disk_dtype``. With a ``cache_dir`` the returned
    features are always the ``disk_dtype``-rounded values, so a result does not depend on whether
    it was computed now or read back.

    Attributes:
        computed: How many frames went through the network (for tests and logs).
    """

    def __init__(
        self,
        model: VGG16Features,
        size: tuple[int, int],
        cache_dir: Path | None = None,
        max_memory_items: int | None = None,
        disk_dtype: np.dtype | type = np.float16,
    ) -> None:
        """Creates an empty cache.

        Args:
            model: The frozen extractor.
            size: (h, w) frames are resized to before extraction; multiples of 16.
            cache_dir: Optional folder for ``.npy`` files (created if missing).
            max_memory_items: Keep at most this many entries in memory (None: unbounded).
            disk_dtype: Storage dtype of the ``.npy`` files.
        """
        self.model = model
        self.size = _check_size(size)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        if max_memory_items is not None and max_memory_items < 0:
            raise InputError(f"max_memory_items must be >= 0, got {max_memory_items}.")
        self.max_memory_items = max_memory_items
        self.disk_dtype = np.dtype(disk_dtype)
        self.computed = 0
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()

    def key(self, rgb_uint8: np.ndarray) -> str:
        """Returns the cache key of a frame (hex sha1)."""
        check_rgb(rgb_uint8, "frame")
        digest = hashlib.sha1()
        digest.update(repr(rgb_uint8.shape).encode())
        digest.update(np.ascontiguousarray(rgb_uint8).tobytes())
        digest.update(self.model.source_name.encode())
        digest.update(repr(self.size).encode())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, rgb_uint8: np.ndarray) -> torch.Tensor:
        """Returns the features of a frame, computing them only if not cached.

        Args:
            rgb_uint8: (H, W, 3) uint8 RGB frame.

        Returns:
            (512, h/16, w/16) float32 features (the cached tensor itself: do not modify).
        """
        key = self.key(rgb_uint8)
        feats = self._memory.get(key)
        if feats is not None:
            self._memory.move_to_end(key)
            return feats
        path = None if self.cache_dir is None else self.cache_dir / f"{key}.npy"
        if path is not None and path.is_file():
            feats = torch.from_numpy(np.load(path).astype(np.float32))
        else:
            feats = extract_features(self.model, rgb_uint8, self.size)
            self.computed += 1
            if path is not None:
                stored = feats.numpy().astype(self.disk_dtype)
                with atomic_path(path) as tmp:
                    np.save(tmp, stored)
                feats = torch.from_numpy(stored.astype(np.float32))
        self._remember(key, feats)
        return feats

    def _remember(self, key: str, feats: torch.Tensor) -> None:
        if self.max_memory_items == 0:
            return
        self._memory[key] = feats
        if self.max_memory_items is not None:
            while len(self._memory) > self.max_memory_items:
                self._memory.popitem(last=False)
