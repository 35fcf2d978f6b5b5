"""Checks of the command line's paths, run before a command does any work or writes anything.

Every check raises :class:`~instrument_seg.errors.InputError` with one sentence naming the
path, so that ``main`` prints ``error: ...`` and exits with status 2. The checks only look
(``stat`` and ``os.access``); they create nothing.

Rules:
    inputs: must exist (a file where a file is needed, e.g. ``--config``).
    output files (``--json``, ``--onnx``, ``--engine``): not a folder; their folder must
        exist and be writable (files are written atomically into it).
    output folders (``--out``, ``--figures``): not a file; missing parents are created as
        before, so the nearest existing ancestor must be a writable folder; a command may
        further require the folder to be absent or empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from instrument_seg.errors import InputError


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest ancestor that does (``.`` at worst)."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def input_path(path: Path | None, what: str) -> None:
    """An input that must exist, file or folder (``--data``, ``--model``); None: not given.

    Args:
        path: the path from the command line.
        what: how the message names it, e.g. ``"data path"`` or ``"model"``.

    Raises:
        InputError: ``{what} {path} does not exist``.
    """
    if path is not None and not Path(path).exists():
        raise InputError(f"{what} {path} does not exist")


def input_file(path: Path | None, what: str) -> None:
    """An input that must be an existing file (``--config``); None: not given.

    Raises:
        InputError: the path is missing or is a folder.
    """
    if path is None:
        return
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory, not a file")


def input_files(paths: Iterable[Path | str], what: str) -> None:
    """:func:`input_file` for each of ``paths`` (e.g. repeated ``--config``)."""
    for path in paths:
        input_file(Path(path), what)


def output_file(path: Path | None, what: str) -> None:
    """A file to (over)write atomically: its folder must exist and be writable.

    Args:
        path: the path from the command line; None: not given.
        what: how the message names it, e.g. ``"JSON report"``.

    Raises:
        InputError: ``path`` is a folder, or its folder is missing, a file or not writable.
    """
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory, not a file")
    parent = path.parent
    if not parent.exists():
        raise InputError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"cannot write {what} {path}: {parent} is not a directory")
    if not _writable(parent):
        raise InputError(f"cannot write {what} {path}: directory {parent} is not writable")


def output_dir(
    path: Path | None,
    what: str,
    empty: bool = False,
    absent: bool = False,
    parent_must_exist: bool = False,
    not_empty_hint: str = "refusing to overwrite it",
) -> None:
    """A folder to create or write into (missing parents are created, unless told otherwise).

    Args:
        path: the path from the command line; None: not given.
        what: how the message names it, e.g. ``"figures folder"``.
        empty: an existing folder must be empty.
        absent: the path must not exist at all.
        parent_must_exist: the folder's parent must already exist (no parents created).
        not_empty_hint: the end of the message for a non-empty folder with ``empty``.

    Raises:
        InputError: the path is a file, exists when it must not, is not empty when it must
            be, or its nearest existing ancestor is a file or not writable.
    """
    if path is None:
        return
    path = Path(path)
    if path.exists():
        if absent:
            raise InputError(f"{what} {path} already exists; refusing to overwrite it")
        if not path.is_dir():
            raise InputError(f"{what} {path} exists and is not a directory")
        if empty and any(path.iterdir()):
            raise InputError(f"{what} {path} is not empty; {not_empty_hint}")
        if not _writable(path):
            raise InputError(f"cannot write {what} {path}: it is not writable")
        return
    if parent_must_exist and not path.parent.exists():
        raise InputError(f"cannot write {what} {path}: directory {path.parent} does not exist")
    ancestor = nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise InputError(f"cannot create {what} {path}: {ancestor} is not a directory")
    if not _writable(ancestor):
        raise InputError(f"cannot create {what} {path}: directory {ancestor} is not writable")


def resumable_run(path: Path) -> None:
    """``train --resume``: ``path`` must be a run directory holding its checkpoint (else there
    is nothing to resume, and training from scratch would be a surprise).

    Raises:
        InputError: the folder is missing, or has no ``checkpoint.pt``.
    """
    from instrument_seg.model.contract import CHECKPOINT

    path = Path(path)
    if not path.is_dir():
        raise InputError(
            f"cannot resume run directory {path}: it does not exist (drop --resume to start a "
            "new run)"
        )
    if not (path / CHECKPOINT).is_file():
        state = "it is empty" if not any(path.iterdir()) else "nothing to resume"
        raise InputError(
            f"cannot resume run directory {path}: it has no {CHECKPOINT} ({state}; drop "
            "--resume to start a new run)"
        )
