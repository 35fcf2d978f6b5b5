"""Motion cue ``c_mot``: pixels that move against the scene's dominant motion.

Label-free methods that beat the paper on EndoVis (e.g. the motion-boundary method of arXiv
2403.10039) get their signal from motion: instruments move on their own, tissue moves with the
camera and breathing. Here, without learned weights: dense optical flow between adjacent frames
with OpenCV's DIS (Kroeger et al., ECCV 2016), the dominant motion as a global affine fit
(RANSAC over a grid of flow vectors), and the cue as the residual flow's magnitude, scaled per
frame to [0, 1] by a high percentile. Static scenes (residual under :data:`MIN_MOTION_PX`
everywhere) give an all-zero cue: no evidence either way. The first frame of a sequence uses the
flow to the next frame, every other frame the flow from the previous one.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from instrument_seg.errors import InputError

#: Residual motion (pixels per frame, at working size) under which nothing counts as moving.
MIN_MOTION_PX = 0.5
#: The cue is the residual magnitude divided by this percentile of it (then clipped to 1).
SCALE_PERCENTILE = 99.0
#: Spacing of the flow vectors the dominant motion is fitted to.
FIT_STEP = 8


def dense_flow(
    prev_rgb: np.ndarray, next_rgb: np.ndarray, dis: cv2.DISOpticalFlow | None = None
) -> np.ndarray:
    """DIS optical flow from ``prev_rgb`` to ``next_rgb``: float32 (H, W, 2) in pixels.

    ``dis``: an OpenCV DIS instance to reuse over a sequence (default: a new one).
    """
    if dis is None:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    a = cv2.cvtColor(prev_rgb, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(next_rgb, cv2.COLOR_RGB2GRAY)
    return dis.calc(a, b, None)


def residual_motion(flow: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Magnitude of the flow left after removing the best global affine motion (H, W).

    Args:
        flow: float32 (H, W, 2) flow.
        valid: optional bool (H, W) field of view; the fit uses these pixels only.
    """
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[FIT_STEP // 2 : h : FIT_STEP, FIT_STEP // 2 : w : FIT_STEP]
    if valid is not None:
        keep = valid[ys, xs]
        ys, xs = ys[keep], xs[keep]
    src = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    dst = src + flow[src[:, 1].astype(int), src[:, 0].astype(int)]
    model = None
    if len(src) >= 3:
        model, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if model is None:
        model = np.array([[1, 0, 0], [0, 1, 0]], np.float64)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    fitted_x = model[0, 0] * gx + model[0, 1] * gy + model[0, 2] - gx
    fitted_y = model[1, 0] * gx + model[1, 1] * gy + model[1, 2] - gy
    res = np.hypot(flow[..., 0] - fitted_x, flow[..., 1] - fitted_y)
    if valid is not None:
        res = np.where(valid, res, 0.0)
    return res.astype(np.float32)


def motion_cue(residual: np.ndarray) -> np.ndarray:
    """Residual motion -> cue in [0, 1] (divided by its 99th percentile, clipped)."""
    scale = float(np.percentile(residual, SCALE_PERCENTILE))
    if scale < MIN_MOTION_PX:
        return np.zeros(residual.shape, np.float32)
    return np.clip(residual / scale, 0.0, 1.0).astype(np.float32)


def sequence_motion(
    frames: Sequence[np.ndarray], valid: np.ndarray | None = None
) -> list[np.ndarray]:
    """The motion cue of every frame of one video (frames in order, same size).

    Args:
        frames: uint8 (H, W, 3) RGB frames.
        valid: optional bool (H, W) field of view of the sequence.

    Returns:
        One float32 (H, W) map in [0, 1] per frame; all zeros for a one-frame sequence.

    Raises:
        InputError: no frames, or frames of different sizes.
    """
    if len(frames) == 0:
        raise InputError("the motion cue needs at least one frame")
    if len({f.shape for f in frames}) > 1:
        raise InputError("frames of one sequence differ in size")
    if len(frames) == 1:
        return [np.zeros(frames[0].shape[:2], np.float32)]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    cues = []
    for t in range(len(frames)):
        a, b = (frames[0], frames[1]) if t == 0 else (frames[t - 1], frames[t])
        cues.append(motion_cue(residual_motion(dense_flow(a, b, dis), valid)))
    return cues
