"""A video file (``.mp4``, ``.avi``, ...) as a sequence without ground truth.

OpenCV's FFmpeg backend prints FFmpeg's own errors on stderr (``moov atom not found`` for a
garbage ``.mp4``, decoder complaints for a damaged stream) before we can say anything; its log
level is set to quiet here (``OPENCV_FFMPEG_LOGLEVEL``, read when OpenCV first opens a video,
unless the user set it), so a bad video gives one sentence naming the file and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from instrument_seg.data.base import Sequence
from instrument_seg.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


class VideoSequence(Sequence):
    """Decodes the whole file once (sequential decoding; seeking is unreliable across codecs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.stem
        self._frames: list[np.ndarray] | None = None
        capture = cv2.VideoCapture(str(path))
        ok = capture.isOpened()
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
        capture.release()
        if not ok or count == 0:
            raise InputError(f"cannot decode video {path} (unreadable or no frames)")

    def _decode(self) -> list[np.ndarray]:
        if self._frames is None:
            capture = cv2.VideoCapture(str(self.path))
            frames = []
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            capture.release()
            if not frames:
                raise InputError(f"cannot decode video {self.path} (no frame could be read)")
            self._frames = frames
        return self._frames

    def __len__(self) -> int:
        return len(self._decode())

    def frame_name(self, index: int) -> str:
        return f"frame{index:06d}"

    def image(self, index: int) -> np.ndarray:
        return self._decode()[index]

    @property
    def has_masks(self) -> bool:
        return False

    def mask(self, index: int) -> np.ndarray | None:
        return None
