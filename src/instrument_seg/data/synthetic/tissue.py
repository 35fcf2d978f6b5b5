"""Tissue of the synthetic scenes: pink-red multi-octave texture, dark branching vessels, pale
fat and wet specular spots on a canvas slightly larger than the frame, warped a little per
frame (camera drift plus slow breathing deformation)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from instrument_seg.data.synthetic.config import SUBPIXEL_BITS, SynthConfig


def _fbm(rng: np.random.Generator, h: int, w: int, period: float, octaves: int) -> np.ndarray:
    """Multi-octave smooth noise in [0, 1]: upsampled random grids, halving period per octave."""
    total = np.zeros((h, w), np.float32)
    amplitude = 1.0
    for _ in range(octaves):
        if period < 1.5:
            layer = rng.standard_normal((h, w)).astype(np.float32)
        else:
            gh, gw = math.ceil(h / period) + 1, math.ceil(w / period) + 1
            grid = rng.standard_normal((gh, gw)).astype(np.float32)
            size = (math.ceil(gw * period), math.ceil(gh * period))
            layer = cv2.resize(grid, size, interpolation=cv2.INTER_CUBIC)[:h, :w]
        total += amplitude * layer
        amplitude *= 0.5
        period /= 2
    lo, hi = np.percentile(total, [1, 99])
    return np.clip((total - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _grow_vessel(
    rng: np.random.Generator,
    canvas: np.ndarray,
    start: np.ndarray,
    heading: float,
    width: float,
    depth: int,
    scale: float,
) -> None:
    """Draw one tapering random-walk vessel into ``canvas``, spawning thinner branches."""
    points = [start]
    turn = 0.0
    for _ in range(int(rng.integers(25, 70))):
        turn = 0.8 * turn + rng.normal(0.0, 0.04)
        heading += turn
        points.append(points[-1] + 3.0 * scale * np.array([math.cos(heading), math.sin(heading)]))
        if depth < 2 and rng.random() < 0.035:
            side = 1.0 if rng.random() < 0.5 else -1.0
            _grow_vessel(
                rng,
                canvas,
                points[-1],
                heading + side * rng.uniform(0.4, 1.1),
                width * 0.6,
                depth + 1,
                scale,
            )
    pts = np.round(np.array(points) * (1 << SUBPIXEL_BITS)).astype(np.int32)
    value = int(rng.integers(150, 256))
    for k, chunk in enumerate(np.array_split(pts, 3)):
        if len(chunk) < 2:
            continue
        thickness = max(1, round(width * (1.0 - 0.25 * k)))
        cv2.polylines(canvas, [chunk], False, value, thickness, cv2.LINE_AA, SUBPIXEL_BITS)


def _vessels(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    canvas = np.zeros((h, w), np.uint8)
    for _ in range(max(3, round(h * w / (15000 * scale * scale)))):
        start = rng.uniform([0, 0], [w, h])
        width = rng.uniform(1.2, 3.5) * scale
        _grow_vessel(rng, canvas, start, rng.uniform(0, 2 * math.pi), width, 0, scale)
    return cv2.GaussianBlur(canvas, (0, 0), 0.6 * scale).astype(np.float32) / 255.0


def _specular_spots(rng: np.random.Generator, bulge: np.ndarray, scale: float) -> np.ndarray:
    """Small saturated glints in clusters on bulging tissue, plus a soft halo, in [0, 1]."""
    h, w = bulge.shape
    core = np.zeros((h, w), np.uint8)
    n_clusters = max(4, round(h * w / (12000 * scale * scale)))
    placed = 0
    while placed < n_clusters:
        centre = rng.uniform([0, 0], [w - 1, h - 1])
        if rng.random() > bulge[int(centre[1]), int(centre[0])] ** 2:
            continue
        placed += 1
        for _ in range(int(rng.integers(1, 7))):
            c = centre + rng.normal(0, 5 * scale, 2)
            axes = (
                max(1, round(rng.uniform(0.8, 4.5) * scale)),
                max(1, round(rng.uniform(0.6, 1.8) * scale)),
            )
            cv2.ellipse(
                core,
                (round(c[0]), round(c[1])),
                axes,
                rng.uniform(0, 180),
                0,
                360,
                255,
                -1,
                cv2.LINE_AA,
            )
    spots = core.astype(np.float32) / 255.0
    halo = cv2.GaussianBlur(spots, (0, 0), 2.5 * scale)
    return np.clip(spots + 0.8 * halo, 0.0, 1.0)


def _tissue(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Pink-red tissue with folds, vessels, fat and glints: float32 (h, w, 4), RGB + glint."""
    tint = rng.uniform([-0.06, -0.05, -0.04], [0.06, 0.03, 0.04]).astype(np.float32)
    dark = np.array([0.52, 0.12, 0.11], np.float32) + tint
    light = np.array([0.90, 0.50, 0.46], np.float32) + tint
    n_colour = _fbm(rng, h, w, 90 * scale, 4)
    n_fine = _fbm(rng, h, w, 5 * scale, 2)
    n_shade = _fbm(rng, h, w, 60 * scale, 3)
    n_fold = _fbm(rng, h, w, 110 * scale, 2)
    albedo = dark + (light - dark) * n_colour[..., None]
    albedo *= (0.9 + 0.2 * n_fine)[..., None]
    folds = (1.0 - np.abs(2.0 * n_fold - 1.0)) ** 12
    albedo *= (1.0 - 0.45 * folds)[..., None]
    vessel = _vessels(rng, h, w, scale)[..., None]
    vessel_colour = np.array([0.38, 0.04, 0.07], np.float32) + 0.5 * tint
    albedo = albedo * (1.0 - 0.75 * vessel) + 0.75 * vessel * vessel_colour
    albedo = _add_fat(rng, albedo, scale)
    albedo *= (0.72 + 0.4 * n_shade)[..., None]
    glint = _specular_spots(rng, n_shade, scale)
    return np.concatenate([albedo, glint[..., None]], axis=2).astype(np.float32)


def _add_fat(rng: np.random.Generator, albedo: np.ndarray, scale: float) -> np.ndarray:
    """Blend in pale yellow-white lobulated fat patches with soft edges."""
    h, w = albedo.shape[:2]
    n_fat = _fbm(rng, h, w, 70 * scale, 3)
    lobules = _fbm(rng, h, w, 14 * scale, 2)
    n_fat = n_fat + 0.08 * (lobules - 0.5)
    threshold = float(np.quantile(n_fat, rng.uniform(0.86, 0.95)))
    fat = _smoothstep(threshold, threshold + 0.08, n_fat)[..., None]
    yellow = np.array([0.93, 0.80, 0.50], np.float32)
    white = np.array([0.98, 0.94, 0.80], np.float32)
    mix = rng.uniform(0.0, 0.7)
    colour = (1 - mix) * yellow + mix * white
    texture = (0.82 + 0.22 * lobules)[..., None]
    return albedo * (1.0 - 0.95 * fat) + 0.95 * fat * colour * texture


@dataclass
class Tissue:
    """Tissue canvas (albedo RGB + specular channel) and its per-frame warp parameters."""

    canvas: np.ndarray  # (H + 2m, W + 2m, 4) float32
    margin: int
    flows: list[tuple[np.ndarray, np.ndarray]]  # low-frequency displacement fields (H, W)
    flow_freq: np.ndarray
    flow_phase: np.ndarray
    drift_amp: np.ndarray  # (2,) px
    drift_freq: np.ndarray
    drift_phase: np.ndarray

    def frame(self, t: float, base_x: np.ndarray, base_y: np.ndarray) -> np.ndarray:
        """The tissue canvas warped for time ``t``, cropped to (H, W, 4)."""
        drift = self.margin + self.drift_amp * np.sin(self.drift_freq * t + self.drift_phase)
        map_x = base_x + np.float32(drift[0])
        map_y = base_y + np.float32(drift[1])
        for (fx, fy), freq, phase in zip(self.flows, self.flow_freq, self.flow_phase, strict=True):
            a = np.float32(math.sin(freq * t + phase))
            map_x += a * fx
            map_y += a * fy
        return cv2.remap(
            self.canvas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )


def make_tissue(rng: np.random.Generator, cfg: SynthConfig, scale: float) -> Tissue:
    h, w = cfg.height, cfg.width
    drift = rng.uniform(0.01, 0.03, 2) * np.array([w, h]) * cfg.tissue_motion
    deform = 2.5 * scale * cfg.tissue_motion
    margin = math.ceil(float(drift.max()) + deform) + 2
    hc, wc = h + 2 * margin, w + 2 * margin
    canvas = _tissue(rng, hc, wc, scale)
    flows = [
        (
            (_fbm(rng, h, w, 100 * scale, 2) - 0.5) * 2 * deform,
            (_fbm(rng, h, w, 100 * scale, 2) - 0.5) * 2 * deform,
        )
        for _ in range(2)
    ]
    speed = cfg.motion_speed
    return Tissue(
        canvas=canvas,
        margin=margin,
        flows=flows,
        flow_freq=2 * math.pi / rng.uniform(40, 90, 2) * speed,
        flow_phase=rng.uniform(0, 2 * math.pi, 2),
        drift_amp=drift,
        drift_freq=2 * math.pi / rng.uniform(80, 200, 2) * speed,
        drift_phase=rng.uniform(0, 2 * math.pi, 2),
    )
