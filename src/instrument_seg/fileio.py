"""Atomic writes: a reader never sees half a file or half a folder, and a failure leaves nothing.

Every file or folder the package produces is written to a hidden temporary sibling and renamed
into place when complete (a rename within one directory is atomic on POSIX). The temporary is
removed if writing fails.

>>> with atomic_path("model.onnx") as tmp:  # doctest: +SKIP
...     tmp.write_bytes(data)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _sibling(path: Path, suffix: str) -> Path:
    """A hidden, unused name next to ``path`` (created by the caller, with the usual mode)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary file path next to ``path``; renames it to ``path`` on success.

    The caller writes the temporary with any writer (``torch.save``, ``np.save``, a plot's
    ``savefig``...). On an exception the temporary is deleted and ``path`` is left untouched.
    The temporary keeps ``path``'s suffix, for writers that choose a format by extension.
    """
    path = Path(path)
    tmp = _sibling(path, path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode())


def write_json(path: str | Path, payload: Any) -> Path:
    """Writes ``payload`` as indented JSON (with a final newline) atomically; returns ``path``."""
    return write_text(path, json.dumps(payload, indent=2) + "\n")


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yields an empty temporary folder next to ``path``; renames it to ``path`` on success.

    ``path`` must not exist when the rename happens (callers check first, so that nothing is
    written for an unusable destination). On an exception the temporary folder is removed.
    """
    path = Path(path)
    tmp = _sibling(path, "")
    tmp.mkdir()
    try:
        yield tmp
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
