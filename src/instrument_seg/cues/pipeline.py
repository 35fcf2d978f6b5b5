"""Shared steps of the offline commands: frames at working size, cues and anchors per frame."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np

from instrument_seg.config import working_size
from instrument_seg.cues.anchors import make_anchors
from instrument_seg.cues.cache import cache_dir_setting, compute_cues, workers_setting
from instrument_seg.cues.maps import check_cue_names
from instrument_seg.cues.motion import sequence_motion
from instrument_seg.cues.refine import check_settings, refine_sequence
from instrument_seg.data import Dataset
from instrument_seg.errors import InputError
from instrument_seg.imaging import field_of_view, resize_rgb


@dataclass
class FrameCues:
    """Cues of one frame at working size, with its identity and (full-size) ground truth."""

    sequence: str
    name: str
    image: np.ndarray  # uint8 (h, w, 3) at working size
    cues: dict[str, np.ndarray]  # float32 (h, w) each
    gt: np.ndarray | None  # bool (H, W) at the frame's own resolution
    fov: np.ndarray | None = None  # bool (h, w) field of view of the sequence; None: all

    def anchors(self, enabled) -> tuple[np.ndarray, np.ndarray]:
        """``(a_pos, a_neg)`` of the enabled cues, both 0 outside the field of view."""
        return make_anchors(self.cues, enabled, valid=self.fov)


def dataset_cues(
    dataset: Dataset,
    config: Mapping[str, Any],
    progress: Callable[[], None] | None = None,
    with_gt: bool = True,
) -> list[FrameCues]:
    """Computes every cue for every frame of ``dataset`` (reads and validates all files first).

    Args:
        dataset: the loaded dataset.
        config: resolved config (``data``, ``cues``, ``seed`` sections are used).
        progress: called once per frame whose cues are done.
        with_gt: also read ground truth where present.

    With ``data.field_of_view`` the endoscope's field of view is detected per sequence
    (:func:`instrument_seg.imaging.field_of_view`) and every cue is 0 outside it; the motion
    cue (``motion`` in ``cues.enabled``) is computed per sequence from adjacent frames.
    """
    size = working_size(config)
    cue_cfg = config["cues"]
    names = check_cue_names(cue_cfg["enabled"])
    still = bool(config["data"]["still_images"])
    use_fov = bool(config["data"]["field_of_view"])
    if "motion" in names and still:
        raise InputError("the motion cue needs video: remove it from cues.enabled for stills")
    workers, cache_dir = workers_setting(config), cache_dir_setting(config)
    prepared = []
    for seq in dataset.sequences:
        originals = [seq.image(i) for i in range(len(seq))]
        gts = [seq.mask(i) if with_gt else None for i in range(len(seq))]
        for i, image in enumerate(originals):
            if image.shape != originals[0].shape:
                raise InputError(
                    f"frame {seq.frame_name(i)} of sequence '{seq.name}' is "
                    f"{image.shape[0]}x{image.shape[1]} but the sequence's first frame is "
                    f"{originals[0].shape[0]}x{originals[0].shape[1]}"
                )
        prepared.append((seq, [resize_rgb(im, size) for im in originals], gts))
    # cue_cache: sequence_cues of every sequence, read back from disk or computed by workers
    all_cues = compute_cues(
        [frames for _, frames, _ in prepared],
        dict(
            names=tuple(n for n in names if n != "motion"),  # motion: below, not cached
            objectness_method=cue_cfg["objectness"]["method"],
            color_scale=cue_cfg["color"]["scale"],
            still_images=still,
            still_sigma=float(cue_cfg["location"]["still_sigma"]),
            seed=int(config["seed"]),
        ),
        workers=workers,
        cache_dir=cache_dir,
        progress=progress,
    )
    out: list[FrameCues] = []
    for (seq, frames, gts), cues in zip(prepared, all_cues, strict=True):
        fov = field_of_view(frames) if use_fov else None
        if fov is not None and fov.all():
            fov = None
        if "motion" in names:
            for maps, motion in zip(cues, sequence_motion(frames, fov), strict=True):
                maps["motion"] = motion
        if fov is not None:
            masked: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id -> (cue, masked cue)
            for maps in cues:  # the location map is one array shared by every frame: mask once
                for name, cue in maps.items():
                    if id(cue) not in masked:
                        masked[id(cue)] = (cue, np.where(fov, cue, np.float32(0.0)))
                    maps[name] = masked[id(cue)][1]
        out += [
            FrameCues(seq.name, seq.frame_name(i), frames[i], cues[i], gts[i], fov)
            for i in range(len(seq))
        ]
    return out


def dataset_anchors(
    frames: Sequence[FrameCues],
    enabled: Sequence[str],
    settings: Mapping[str, Any] | None = None,
    still_images: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(a_pos, a_neg)`` of every frame, refined per sequence (:mod:`instrument_seg.cues.refine`).

    Args:
        frames: the frames' cues, a sequence's frames consecutive and in order.
        enabled: the cues fused into the anchors.
        settings: the ``anchors:`` config section (None or all off: the fused cues alone).
        still_images: the frames are unrelated stills: no temporal fusion.

    Returns:
        One ``(a_pos, a_neg)`` pair per frame, float32 (h, w), 0 outside the field of view.
    """
    s = check_settings(settings or {})
    if still_images:
        s["temporal"] = 0
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for _, group in groupby(frames, key=lambda fc: fc.sequence):
        seq = list(group)
        raw = [fc.anchors(enabled) for fc in seq]
        if s["highlights"] or s["temporal"] or s["border"]:
            raw = refine_sequence([fc.image for fc in seq], raw, seq[0].fov, s)
        out += raw
    return out
