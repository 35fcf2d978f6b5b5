"""Writing a bag back out as the generic folder layout (``instrument-seg bag --extract``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from instrument_seg.data.bags.reader import bag_dataset
from instrument_seg.data.base import Dataset
from instrument_seg.data.folders import check_output_folder, sequence_frames, write_folders
from instrument_seg.errors import InputError


def extract_bag(
    source: str | Path | Dataset,
    out: str | Path,
    image_topic: str | None = None,
    gt_topic: str | None = None,
    progress: Callable[[], None] | None = None,
) -> tuple[Dataset, Path]:
    """Writes a bag as the generic layout ``out/<sequence>/{images,masks}/<frame>.png``.

    Everything goes to a hidden sibling directory first, renamed to ``out`` at the end
    (:func:`instrument_seg.data.folders.write_folders`).

    Args:
        source: the bag's path, or the bag already opened with
            :func:`~instrument_seg.data.bags.reader.bag_dataset` (then ``image_topic`` and
            ``gt_topic`` are not used).
        out: directory to create (it may exist only if empty).
        image_topic, gt_topic: as for :func:`~instrument_seg.data.bags.reader.open_bag`.
        progress: called once per frame written.

    Returns:
        The bag as a dataset, and ``out``.

    Raises:
        InputError: a bad bag (see :class:`~instrument_seg.data.bags.reader.BagIndex`), or
            ``out`` exists and is not an empty directory.
    """
    out = Path(out)
    check_output_folder(out)
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: directory {out.parent} does not exist")
    if isinstance(source, Dataset):
        dataset = source
    else:
        dataset = bag_dataset(source, image_topic, gt_topic)
    write_folders(out, (sequence_frames(seq) for seq in dataset.sequences), progress)
    return dataset, out
