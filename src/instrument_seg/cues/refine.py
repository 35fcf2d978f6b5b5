"""Anchors that carry shape and time: the fused cue anchors refined before training.

The cues are a near-deterministic function of a pixel's appearance, so their anchors mark
everything grey and bright, tool or not. Three refinements, each switchable in the
``anchors:`` section of config/train.yaml and applied per sequence, in this order:

- **highlights** (:func:`highlight_mask`): specular highlights are white, so the colour cue
  calls them instrument; the small saturated-white blobs (value high, saturation low, area
  under ``highlight_max_area`` of the view) ringed by saturated tissue are removed from the
  positive anchor (the negative anchor is left alone).
- **temporal** (:func:`temporal_fuse`): each frame's anchors become the per-pixel median of
  its own and its ``temporal`` neighbours' on either side, warped onto it by dense optical flow
  (OpenCV DIS, as the motion cue): a blob in one frame is voted out by the others.
- **border** (:func:`border_connected`): instruments enter the view from its edge; the parts
  of the positive anchor (thresholded by Otsu inside the view) that do not reach the border of
  the field of view are removed from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from instrument_seg.cues.motion import dense_flow
from instrument_seg.errors import InputError
from instrument_seg.imaging import otsu_threshold

#: Keys of the ``anchors:`` config section and their defaults (off: the paper's anchors).
DEFAULTS: dict[str, Any] = {
    "highlights": False,
    "highlight_value": 0.85,
    "highlight_saturation": 0.2,
    "highlight_max_area": 0.01,
    "highlight_ring_saturation": 0.3,
    "temporal": 0,
    "border": False,
    "border_margin": 0.03,
}


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``anchors:`` section with defaults filled in, checked.

    Raises:
        InputError: an unknown key or a value out of range, named.
    """
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise InputError(f"unknown key anchors.{unknown[0]}; known: {', '.join(DEFAULTS)}")
    out = {**DEFAULTS, **settings}
    for key in (
        "highlight_value",
        "highlight_saturation",
        "highlight_max_area",
        "highlight_ring_saturation",
        "border_margin",
    ):
        value = out[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise InputError(f"anchors.{key} must be a number in [0, 1], got {value!r}")
    temporal = out["temporal"]
    if not isinstance(temporal, int) or isinstance(temporal, bool) or not 0 <= temporal <= 8:
        raise InputError(f"anchors.temporal must be an integer 0..8 (frames), got {temporal!r}")
    for key in ("highlights", "border"):
        if not isinstance(out[key], bool):
            raise InputError(f"anchors.{key} must be true or false, got {out[key]!r}")
    return out


def highlight_mask(
    rgb: np.ndarray,
    valid: np.ndarray | None = None,
    value: float = 0.85,
    saturation: float = 0.2,
    max_area: float = 0.01,
    ring_saturation: float = 0.3,
) -> np.ndarray:
    """Specular highlights on tissue: small blobs of bright, unsaturated pixels whose
    surroundings are saturated (tissue, not grey metal), slightly enlarged.

    Colour alone cannot tell a highlight from a bright metal tool part; what differs is the
    ring around the blob: coloured tissue around a highlight, grey metal around a tool's
    reflection.

    Args:
        rgb: uint8 (H, W, 3) frame.
        valid: optional bool (H, W) field of view (its area is what ``max_area`` is a share of).
        value: HSV value (in [0, 1]) above which a pixel may be a highlight.
        saturation: HSV saturation (in [0, 1]) under which it may be one.
        max_area: blobs larger than this share of the view are kept (a bright tool).
        ring_saturation: a blob is a highlight when the median saturation of the 2-pixel ring
            around it is above this.

    Returns:
        bool (H, W): the highlight pixels (and a one-pixel ring around them: their halo).
    """
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    bright = (hsv[..., 2] >= value * 255) & (hsv[..., 1] <= saturation * 255)
    if valid is not None:
        bright &= valid
    area = float(valid.sum()) if valid is not None else float(bright.size)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bright.astype(np.uint8), 8)
    h, w = bright.shape
    mask = np.zeros((h, w), bool)
    ring_kernel = np.ones((5, 5), np.uint8)
    for k in range(1, n):
        x, y, bw, bh, count = stats[k]
        if count > max_area * area:
            continue
        y0, y1, x0, x1 = max(0, y - 2), min(h, y + bh + 2), max(0, x - 2), min(w, x + bw + 2)
        blob = labels[y0:y1, x0:x1] == k
        ring = cv2.dilate(blob.astype(np.uint8), ring_kernel).astype(bool) & ~bright[y0:y1, x0:x1]
        if valid is not None:
            ring &= valid[y0:y1, x0:x1]
        if ring.any() and np.median(hsv[y0:y1, x0:x1, 1][ring]) > ring_saturation * 255:
            mask[y0:y1, x0:x1] |= blob
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def border_connected(
    a_pos: np.ndarray, valid: np.ndarray | None = None, margin: float = 0.03
) -> np.ndarray:
    """The positive anchor kept only on the parts that reach the border of the view.

    Args:
        a_pos: float32 (H, W) positive anchor.
        valid: optional bool (H, W) field of view (None: the whole frame).
        margin: how close to the border a part must come, as a share of the shorter side.

    Returns:
        float32 (H, W): ``a_pos`` where an Otsu component of it touches the border band, else 0.
    """
    h, w = a_pos.shape
    view = np.ones((h, w), bool) if valid is None else valid.astype(bool)
    if not view.any() or float(a_pos.max()) <= 0.0:
        return a_pos.astype(np.float32)
    fg = (a_pos > otsu_threshold(a_pos[view])) & view
    band_px = max(1, round(margin * min(h, w)))
    inner = cv2.erode(
        np.pad(view, 1).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=band_px
    )[1:-1, 1:-1].astype(bool)
    band = view & ~inner
    n, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    touching = np.zeros(n, bool)
    touching[np.unique(labels[band & fg])] = True
    touching[0] = False
    kept = touching[labels]
    # the parts that do not reach the border go, with their soft halo (2 px), kept parts stay
    drop = cv2.dilate((fg & ~kept).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return np.where(drop & ~kept, 0.0, a_pos).astype(np.float32)


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``x + flow(x)`` (bilinear; 0 outside)."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        image.astype(np.float32),
        xs + flow[..., 0],
        ys + flow[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=float("nan"),
    )


def temporal_fuse(
    frames: Sequence[np.ndarray], maps: Sequence[np.ndarray], radius: int
) -> list[np.ndarray]:
    """Each map replaced by the median of its own and its neighbours', warped onto its frame.

    Args:
        frames: uint8 (H, W, 3) consecutive frames of one sequence.
        maps: float32 (H, W) maps of those frames (anchors).
        radius: neighbours on each side (0: the maps unchanged).

    Returns:
        The fused maps (a pixel whose neighbours' flow leaves the image uses those inside).
    """
    if len(frames) != len(maps):
        raise InputError(f"{len(frames)} frames but {len(maps)} maps")
    if radius == 0 or len(frames) < 2:
        return [np.asarray(m, np.float32) for m in maps]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = []
    for t in range(len(frames)):
        stack = [np.asarray(maps[t], np.float32)]
        for s in range(max(0, t - radius), min(len(frames), t + radius + 1)):
            if s != t:
                stack.append(_warp(maps[s], dense_flow(frames[t], frames[s], dis)))
        fused = np.nanmedian(np.stack(stack), axis=0)
        out.append(np.where(np.isfinite(fused), fused, maps[t]).astype(np.float32))
    return out


def refine_sequence(
    images: Sequence[np.ndarray],
    anchors: Sequence[tuple[np.ndarray, np.ndarray]],
    valid: np.ndarray | None,
    settings: Mapping[str, Any],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The refinements switched on in ``settings``, on one sequence's anchors.

    Args:
        images: uint8 (H, W, 3) frames of the sequence, in order, at working size.
        anchors: ``(a_pos, a_neg)`` of each frame, float32 (H, W), 0 outside the view.
        valid: bool (H, W) field of view of the sequence, or None.
        settings: the ``anchors:`` config section (see :data:`DEFAULTS`).

    Returns:
        The refined ``(a_pos, a_neg)`` of each frame (still 0 outside the view).
    """
    s = check_settings(settings)
    pos = [np.asarray(a, np.float32) for a, _ in anchors]
    neg = [np.asarray(b, np.float32) for _, b in anchors]
    if s["highlights"]:
        pos = [
            np.where(
                highlight_mask(
                    img,
                    valid,
                    s["highlight_value"],
                    s["highlight_saturation"],
                    s["highlight_max_area"],
                    s["highlight_ring_saturation"],
                ),
                0.0,
                a,
            ).astype(np.float32)
            for img, a in zip(images, pos, strict=True)
        ]
    if s["temporal"]:
        pos = temporal_fuse(images, pos, s["temporal"])
        neg = temporal_fuse(images, neg, s["temporal"])
        if valid is not None:
            pos = [a * valid for a in pos]
            neg = [b * valid for b in neg]
    if s["border"]:
        pos = [border_connected(a, valid, s["border_margin"]) for a in pos]
    return list(zip(pos, neg, strict=True))
