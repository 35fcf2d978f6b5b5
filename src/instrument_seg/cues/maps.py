"""The three hand-made cues of Liu et al. (MICCAI 2020), each a float32 map in [0, 1].

- colour ``c_col = (1 - A) * (1 - S)``: grey, unsaturated pixels (instruments) score high;
- objectness ``c_obj``: class-agnostic window objectness (:mod:`instrument_seg.cues.objectness`);
- location ``c_loc``: the mean colour map of the whole video, or a centre prior for stills.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from instrument_seg.cues.objectness import objectness_map
from instrument_seg.errors import InputError, check_rgb

#: Every cue; ``motion`` (:mod:`instrument_seg.cues.motion`) needs video.
CUE_NAMES = ("color", "objectness", "location", "motion")
#: The paper's three cues.
DEFAULT_CUES = ("color", "objectness", "location")


COLOR_SCALES = ("fixed", "frame")
STRETCH_PERCENTILES = (1.0, 99.0)


def color_cue(rgb: np.ndarray, scale: str = "fixed") -> np.ndarray:
    """Colour cue ``(1 - A) * (1 - S)``.

    Args:
        rgb: uint8 (H, W, 3) RGB frame.
        scale: ``fixed``: A is the LAB a-channel (OpenCV's 8-bit LAB, a/255) and S the HSV
            saturation (S/255), so the map spans about [0.1, 0.5] on endoscopy (a neutral grey
            has a = 128/255); ``frame``: that map stretched to [0, 1] between its 1st and 99th
            percentiles (clipped), so the cue has the same range as the other cues in the
            anchor products. Otsu on the cue alone is the same either way.

    Returns:
        float32 (H, W) in [0, 1]: red saturated tissue scores low and grey metal high.
    """
    check_rgb(rgb)
    if scale not in COLOR_SCALES:
        raise InputError(f"unknown colour scale '{scale}' (valid: {', '.join(COLOR_SCALES)})")
    a = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 1].astype(np.float32) / 255.0
    s = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32) / 255.0
    c = (1.0 - a) * (1.0 - s)
    if scale == "frame":
        lo, hi = np.percentile(c, STRETCH_PERCENTILES)
        c = np.clip((c - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    return c.astype(np.float32)


def video_location_cue(color_maps: Sequence[np.ndarray]) -> np.ndarray:
    """Video-adaptive location prior: the mean of the colour maps over the video.

    Args:
        color_maps: the colour cue of every frame of one video, each (H, W).

    Returns:
        float32 (H, W) in [0, 1].
    """
    if len(color_maps) == 0:
        raise InputError("the location cue needs at least one colour map")
    return np.mean(np.stack(color_maps), axis=0).astype(np.float32)


def centre_prior(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """Fixed 2-D Gaussian centre prior for still images (peak 1 at the centre).

    Args:
        shape: (H, W).
        sigma: standard deviation as a fraction of each image side.
    """
    if sigma <= 0:
        raise InputError(f"cues.location.still_sigma must be positive, got {sigma}")
    h, w = shape
    y = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    x = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)


def check_cue_names(names: Sequence[str]) -> tuple[str, ...]:
    """Validates a non-empty subset of :data:`CUE_NAMES`; returns it in canonical order."""
    unknown = [n for n in names if n not in CUE_NAMES]
    if unknown:
        raise InputError(f"unknown cue '{unknown[0]}' (valid: {', '.join(CUE_NAMES)})")
    if not names:
        raise InputError("at least one cue must be enabled")
    return tuple(n for n in CUE_NAMES if n in names)


def sequence_cues(
    frames: Sequence[np.ndarray],
    *,
    names: Sequence[str] = DEFAULT_CUES,
    objectness_method: str = "alexe",
    color_scale: str = "fixed",
    still_images: bool = False,
    still_sigma: float = 0.25,
    seed: int = 0,
    progress=None,
) -> list[dict[str, np.ndarray]]:
    """All three cues for every frame of one sequence (frames already at working size).

    Args:
        frames: uint8 RGB frames (H, W, 3) of one video, in order, all the same size.
        names: the cues to compute (a subset of :data:`CUE_NAMES`).
        objectness_method: a method of :func:`instrument_seg.objectness.objectness_map`.
        color_scale: see :func:`color_cue`.
        still_images: use the centre prior instead of the video mean for the location cue.
        still_sigma: centre-prior sigma (fraction of the image side).
        seed: objectness sampling seed.
        progress: optional callable invoked once per frame (e.g. a tqdm ``update``).

    Returns:
        One dict per frame with a float32 (H, W) map per requested cue name.
    """
    names = check_cue_names(names)
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise InputError(f"frames of one sequence differ in size: {sorted(shapes)}")
    cues = []
    for frame in frames:
        maps = {"color": color_cue(frame, color_scale)}
        if "objectness" in names:
            maps["objectness"] = objectness_map(frame, objectness_method, seed=seed)
        cues.append(maps)
        if progress is not None:
            progress()
    finish_sequence_cues(cues, frames[0].shape[:2], names, still_images, still_sigma)
    return cues


def finish_sequence_cues(
    cues: list[dict[str, np.ndarray]],
    shape: tuple[int, int],
    names: Sequence[str],
    still_images: bool = False,
    still_sigma: float = 0.25,
) -> None:
    """Completes one sequence's per-frame maps in place: adds the location cue (the mean colour
    map of the sequence, or the centre prior for stills) if enabled, drops colour if not.

    Args:
        cues: one dict per frame holding at least ``color``.
        shape: (H, W) of the frames.
        names: the enabled cues.
        still_images: use the centre prior for the location cue.
        still_sigma: centre-prior sigma (fraction of the image side).
    """
    if "location" in names:
        if still_images:
            location = centre_prior(shape, still_sigma)
        else:
            location = video_location_cue([c["color"] for c in cues])
        for c in cues:
            c["location"] = location
    if "color" not in names:
        for c in cues:
            del c["color"]
