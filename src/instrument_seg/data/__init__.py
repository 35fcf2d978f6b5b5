"""Datasets: generic folders, EndoVis 2017, video files and rosbag2 bags, auto-detected."""

from __future__ import annotations

from pathlib import Path

from instrument_seg.data.bags import is_bag, open_bag
from instrument_seg.data.base import Dataset, FrameRef, Sequence
from instrument_seg.data.endovis import EndoVisSequence, is_endovis_sequence
from instrument_seg.data.folders import FolderSequence, is_generic_sequence
from instrument_seg.data.video import VideoSequence, is_video
from instrument_seg.errors import InputError

__all__ = ["Dataset", "FrameRef", "Sequence", "load_dataset"]

EXPECTED = (
    "expected DIR/<sequence>/images/*.png, EndoVis instrument_dataset_N/left_frames, "
    "video files or rosbag2 bags"
)


def _sequence_at(path: Path) -> tuple[list[Sequence], str] | None:
    if is_video(path):
        return [VideoSequence(path)], "video"
    if is_bag(path):  # a bag may hold several sequences (see data/bags.py)
        return list(open_bag(path)), "rosbag2"
    if path.is_dir() and is_endovis_sequence(path):
        return [EndoVisSequence(path)], "endovis"
    if path.is_dir() and is_generic_sequence(path):
        return [FolderSequence(path)], "generic"
    return None


def load_dataset(path: str | Path) -> Dataset:
    """Finds the sequences under ``path`` (or ``path`` itself as one sequence).

    Raises:
        InputError: the path is missing, or holds no sequence in a known layout.
    """
    root = Path(path)
    if not root.exists():
        raise InputError(f"data path {root} does not exist")
    found = _sequence_at(root)
    if found is not None:
        return Dataset(str(root), found[0], found[1])
    if not root.is_dir():
        raise InputError(f"data path {root} is neither a directory, a video file nor a bag")
    sequences, layouts = [], set()
    for child in sorted(root.iterdir()):
        found = _sequence_at(child)
        if found is not None:
            sequences.extend(found[0])
            layouts.add(found[1])
    if not sequences:
        raise InputError(f"no frames found in {root} ({EXPECTED})")
    return Dataset(str(root), sequences, "+".join(sorted(layouts)))
