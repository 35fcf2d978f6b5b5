"""Procedural synthetic laparoscopy video with exact instrument masks, for demos and tests.

Each sequence is rendered from one seed. The tissue (pink-red multi-octave texture, dark
branching vessels, pale fat, wet specular spots) is built once on a canvas slightly larger than
the frame and warped a little per frame (camera drift plus slow breathing deformation). One to
three instruments pivot about a remote point outside the image and slide in and out along their
shaft, so they always enter from the border; each has a grey-metal or black shaft, a metal wrist
and two jaws that open and close. The ground truth is rasterised from the same polygons as the
image, before any optical, motion or defocus blur, so it is exact by construction.

This is not a benchmark: it exists so the pipeline can be exercised without real data.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from instrument_seg.errors import InputError

MIN_SIDE = 32
MAX_SIDE = 4096
MAX_INSTRUMENTS = 3
_SUBPIXEL_BITS = 4  # fillPoly fixed-point precision: 1/16 px
_FRAME_NAME = "frame_{:04d}.png"


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one synthetic sequence.

    Attributes:
        height: Frame height in pixels (32..4096).
        width: Frame width in pixels (32..4096).
        n_frames: Number of frames (>= 1).
        seed: Non-negative seed; the same config always renders the same arrays.
        n_instruments: Instruments in view (0..3), or None to draw 1..3 from the seed.
        blur_probability: Chance per frame of camera motion blur or defocus (0..1).
        tissue_motion: Scale of tissue drift and deformation (0 freezes the tissue, 0..4).
        motion_speed: Scale of all temporal frequencies (instruments, tissue, light; 0..4).
        noise_sigma: Standard deviation of the sensor noise in 8-bit grey levels (0..50).
    """

    height: int = 256
    width: int = 320
    n_frames: int = 8
    seed: int = 0
    n_instruments: int | None = None
    blur_probability: float = 0.15
    tissue_motion: float = 1.0
    motion_speed: float = 1.0
    noise_sigma: float = 2.0

    def __post_init__(self) -> None:
        _check_int("height", self.height, MIN_SIDE, MAX_SIDE)
        _check_int("width", self.width, MIN_SIDE, MAX_SIDE)
        _check_int("n_frames", self.n_frames, 1, None)
        _check_int("seed", self.seed, 0, None)
        if self.n_instruments is not None:
            _check_int("n_instruments", self.n_instruments, 0, MAX_INSTRUMENTS)
        _check_float("blur_probability", self.blur_probability, 0.0, 1.0)
        _check_float("tissue_motion", self.tissue_motion, 0.0, 4.0)
        _check_float("motion_speed", self.motion_speed, 0.0, 4.0)
        _check_float("noise_sigma", self.noise_sigma, 0.0, 50.0)


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise InputError(f"{name}={value!r} must be {bound}")


def _check_float(name: str, value: object, low: float, high: float) -> None:
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    if not ok or not low <= float(value) <= high:
        raise InputError(f"{name}={value!r} must be a number in {low}..{high}")


# --------------------------------------------------------------------------------------------
# Tissue
# --------------------------------------------------------------------------------------------


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
    pts = np.round(np.array(points) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    value = int(rng.integers(150, 256))
    for k, chunk in enumerate(np.array_split(pts, 3)):
        if len(chunk) < 2:
            continue
        thickness = max(1, round(width * (1.0 - 0.25 * k)))
        cv2.polylines(canvas, [chunk], False, value, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)


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
class _Tissue:
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


def _make_tissue(rng: np.random.Generator, cfg: SynthConfig, scale: float) -> _Tissue:
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
    return _Tissue(
        canvas=canvas,
        margin=margin,
        flows=flows,
        flow_freq=2 * math.pi / rng.uniform(40, 90, 2) * speed,
        flow_phase=rng.uniform(0, 2 * math.pi, 2),
        drift_amp=drift,
        drift_freq=2 * math.pi / rng.uniform(80, 200, 2) * speed,
        drift_phase=rng.uniform(0, 2 * math.pi, 2),
    )


# --------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------


@dataclass
class _Part:
    """One convex piece of an instrument: polygon plus what is needed to shade it."""

    polygon: np.ndarray  # (k, 2) float (x, y)
    origin: np.ndarray  # a point on the part's axis
    normal: np.ndarray  # unit vector across the part
    half_width: float
    colour: np.ndarray  # (3,) float32
    shine: float
    grooves: tuple[np.ndarray, np.ndarray, float] | None = None  # (origin, direction, spacing)


@dataclass
class _Instrument:
    """An instrument pivoting about a remote point outside the image."""

    pivot: np.ndarray
    angle0: float
    angle_amp: np.ndarray  # (2,) rad
    angle_freq: np.ndarray
    angle_phase: np.ndarray
    depth0: float
    depth_amp: float
    depth_freq: float
    depth_phase: float
    width: float
    shaft_colour: np.ndarray
    metal_colour: np.ndarray
    shaft_shine: float
    wrist_len: float
    jaw_len: float
    jaw_max: float
    jaw_freq: float
    jaw_phase: float
    bend_amp: float
    bend_freq: float
    bend_phase: float

    def parts(self, t: float) -> list[_Part]:
        """Shaft, wrist, knuckle and two jaws at time ``t``, back to front."""
        angle = self.angle0 + float(
            np.sum(self.angle_amp * np.sin(self.angle_freq * t + self.angle_phase))
        )
        depth = self.depth0 + self.depth_amp * math.sin(self.depth_freq * t + self.depth_phase)
        d = _unit(angle)
        shaft_end = self.pivot + depth * d
        wrist_end = shaft_end + self.wrist_len * d
        parts = [
            _strip(
                self.pivot - self.width * d,
                shaft_end,
                self.width,
                self.shaft_colour,
                self.shaft_shine,
            ),
            _strip(shaft_end - 0.5 * d, wrist_end, 0.88 * self.width, self.metal_colour, 0.6),
        ]
        parts[1].grooves = (shaft_end, d, self.wrist_len / 3.0)
        bend = self.bend_amp * math.sin(self.bend_freq * t + self.bend_phase)
        opening = self.jaw_max * 0.5 * (1.0 + math.sin(self.jaw_freq * t + self.jaw_phase))
        parts.append(_knuckle(wrist_end, angle + bend, 0.44 * self.width, self.metal_colour))
        for side in (1.0, -1.0):
            parts.append(self._jaw(wrist_end, angle + bend, side, opening))
        return parts

    def _jaw(self, hinge: np.ndarray, axis_angle: float, side: float, opening: float) -> _Part:
        axis = _unit(axis_angle)
        base = hinge + side * 0.16 * self.width * _perp(axis)
        d = _unit(axis_angle + side * opening / 2)
        n = _perp(d)
        length = self.jaw_len
        half = [0.24 * self.width, 0.2 * self.width, 0.07 * self.width]
        along = [0.0, 0.55 * length, length]
        left = [base + a * d + hw * n for a, hw in zip(along, half, strict=True)]
        right = [base + a * d - hw * n for a, hw in zip(along, half, strict=True)]
        polygon = np.array(left + right[::-1])
        colour = self.metal_colour * (1.0 + 0.08 * side)
        return _Part(polygon, base, n, 0.24 * self.width, colour.astype(np.float32), 0.5)


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _perp(d: np.ndarray) -> np.ndarray:
    return np.array([-d[1], d[0]])


def _strip(
    start: np.ndarray, end: np.ndarray, width: float, colour: np.ndarray, shine: float
) -> _Part:
    """A rectangle of ``width`` from ``start`` to ``end`` (a shaft seen side-on)."""
    d = (end - start) / max(float(np.linalg.norm(end - start)), 1e-6)
    n = _perp(d) * (width / 2)
    polygon = np.array([start + n, end + n, end - n, start - n])
    return _Part(polygon, start, _perp(d), width / 2, colour, shine)


def _knuckle(centre: np.ndarray, angle: float, radius: float, colour: np.ndarray) -> _Part:
    theta = np.linspace(0, 2 * math.pi, 20, endpoint=False)
    polygon = centre + radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return _Part(polygon, centre, _perp(_unit(angle)), radius, colour * 0.95, 0.7)


def _make_instrument(
    rng: np.random.Generator, side: str, cfg: SynthConfig, slide_out: bool
) -> _Instrument:
    """An instrument entering from ``side`` aimed at a point in the middle of the image."""
    h, w = cfg.height, cfg.width
    diag = math.hypot(h, w)
    along = rng.uniform(0.15, 0.85)
    entry = {
        "left": (0.0, along * h),
        "right": (w, along * h),
        "top": (along * w, 0.0),
        "bottom": (along * w, h),
    }[side]
    target = rng.uniform([0.3 * w, 0.3 * h], [0.7 * w, 0.7 * h])
    d = target - np.array(entry)
    angle0 = math.atan2(d[1], d[0])
    pivot = np.array(entry) - rng.uniform(0.25, 0.6) * diag * _unit(angle0)
    width = rng.uniform(0.055, 0.085) * diag
    wrist_len = rng.uniform(0.9, 1.3) * width
    jaw_len = rng.uniform(1.2, 1.8) * width
    reach = float(np.linalg.norm(target - pivot)) - wrist_len - jaw_len
    black = rng.random() < 0.5
    metal = np.full(3, rng.uniform(0.5, 0.7)) * np.array([0.98, 1.0, 1.04])
    shaft = np.full(3, rng.uniform(0.06, 0.12)) if black else metal * rng.uniform(0.9, 1.05)
    speed = cfg.motion_speed
    return _Instrument(
        pivot=pivot,
        angle0=angle0,
        angle_amp=rng.uniform(0.03, 0.12, 2) * rng.choice([-1, 1], 2),
        angle_freq=2 * math.pi / rng.uniform(35, 110, 2) * speed,
        angle_phase=rng.uniform(0, 2 * math.pi, 2),
        depth0=reach,
        depth_amp=(0.3 if slide_out else rng.uniform(0.04, 0.12)) * diag,
        depth_freq=2 * math.pi / rng.uniform(40, 100) * speed,
        depth_phase=rng.uniform(0, 2 * math.pi),
        width=width,
        shaft_colour=shaft.astype(np.float32),
        metal_colour=metal.astype(np.float32),
        shaft_shine=0.35 if black else 0.55,
        wrist_len=wrist_len,
        jaw_len=jaw_len,
        jaw_max=rng.uniform(0.4, 0.9),
        jaw_freq=2 * math.pi / rng.uniform(15, 40) * speed,
        jaw_phase=rng.uniform(0, 2 * math.pi),
        bend_amp=rng.uniform(0.0, 0.5),
        bend_freq=2 * math.pi / rng.uniform(30, 80) * speed,
        bend_phase=rng.uniform(0, 2 * math.pi),
    )


def _make_instruments(rng: np.random.Generator, cfg: SynthConfig) -> list[_Instrument]:
    n = (
        int(rng.integers(1, MAX_INSTRUMENTS + 1))
        if cfg.n_instruments is None
        else cfg.n_instruments
    )
    sides = ["left", "right", "bottom", "top"]
    chosen = rng.choice(sides, size=n, replace=False, p=[0.3, 0.3, 0.3, 0.1]) if n else []
    slide_out = int(rng.integers(0, n)) if n and rng.random() < 0.3 else -1
    return [_make_instrument(rng, str(s), cfg, k == slide_out) for k, s in enumerate(chosen)]


def _rasterise(polygon: np.ndarray, h: int, w: int) -> tuple[slice, slice, np.ndarray] | None:
    """The polygon's bounding box in the image and a bool mask inside it (None if off-image)."""
    x0 = max(0, math.floor(polygon[:, 0].min()))
    y0 = max(0, math.floor(polygon[:, 1].min()))
    x1 = min(w, math.ceil(polygon[:, 0].max()) + 1)
    y1 = min(h, math.ceil(polygon[:, 1].max()) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((polygon - [x0, y0]) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(local, [pts], 1, cv2.LINE_8, _SUBPIXEL_BITS)
    if not local.any():
        return None
    return slice(y0, y1), slice(x0, x1), local.astype(bool)


def _shade(part: _Part, ys: slice, xs: slice, reflection: np.ndarray) -> np.ndarray:
    """Cylinder-like colour of ``part`` over a bounding box: diffuse, specular stripe, rim."""
    yy, xx = np.mgrid[ys, xs].astype(np.float32)
    u = (xx - part.origin[0]) * part.normal[0] + (yy - part.origin[1]) * part.normal[1]
    u = np.clip(u / part.half_width, -1.0, 1.0)
    diffuse = 0.35 + 0.65 * np.sqrt(1.0 - u * u)
    stripe = part.shine * np.exp(-((u + 0.25) ** 2) / 0.015)
    rim = 0.25 * u * u
    rgb = part.colour * diffuse[..., None] + stripe[..., None] + reflection * rim[..., None]
    if part.grooves is not None:
        origin, d, spacing = part.grooves
        s = (xx - origin[0]) * d[0] + (yy - origin[1]) * d[1]
        phase = np.abs(((s / spacing) + 0.5) % 1.0 - 0.5) * spacing
        rgb *= (0.45 + 0.55 * np.clip(phase / 1.2, 0.0, 1.0))[..., None]
    return rgb


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


@dataclass
class _Lighting:
    gain_amp: np.ndarray
    gain_freq: np.ndarray
    gain_phase: np.ndarray
    centre: np.ndarray  # vignette centre, fraction of (w, h)
    wobble: float
    radius: float
    glint_phase: float

    def gain(self, t: float) -> float:
        return 1.0 + float(np.sum(self.gain_amp * np.sin(self.gain_freq * t + self.gain_phase)))

    def vignette(self, t: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        h, w = xx.shape
        cx = w * (self.centre[0] + self.wobble * math.sin(0.05 * t + self.glint_phase))
        cy = h * (self.centre[1] + self.wobble * math.cos(0.04 * t + self.glint_phase))
        r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (0.25 * (h * h + w * w))
        return np.exp(-((r2 / self.radius**2) ** 1.5))


def _make_lighting(rng: np.random.Generator, cfg: SynthConfig) -> _Lighting:
    return _Lighting(
        gain_amp=rng.uniform(0.02, 0.06, 2),
        gain_freq=2 * math.pi / rng.uniform(20, 80, 2) * cfg.motion_speed,
        gain_phase=rng.uniform(0, 2 * math.pi, 2),
        centre=rng.uniform(0.45, 0.55, 2),
        wobble=0.02,
        radius=rng.uniform(0.95, 1.15),
        glint_phase=rng.uniform(0, 2 * math.pi),
    )


def _drop_shadow(image: np.ndarray, mask: np.ndarray, scale: float) -> None:
    """Darken the tissue with a soft offset shadow of the instruments (in place)."""
    off = max(1, round(4 * scale))
    shifted = np.zeros(mask.shape, np.float32)
    shifted[off:, off:] = mask[:-off, :-off]
    shadow = cv2.GaussianBlur(shifted, (0, 0), 5 * scale)
    image *= (1.0 - 0.4 * shadow)[..., None]


def _random_blur(rng: np.random.Generator, image: np.ndarray, scale: float) -> np.ndarray:
    """Camera motion blur along a random direction, or defocus."""
    if rng.random() < 0.5:
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(1.5, 3.0) * scale)
    length = max(3, round(rng.uniform(6, 14) * scale)) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6))


def iter_frames(config: SynthConfig) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Render the sequence of ``config`` lazily, one frame at a time.

    Args:
        config: What to render; the same config always yields the same arrays.

    Yields:
        ``(frame, mask)``: uint8 RGB (H, W, 3) and uint8 (H, W) in {0, 255}.
    """
    rng = np.random.default_rng(config.seed)
    h, w = config.height, config.width
    scale = min(h, w) / 256.0
    tissue = _make_tissue(rng, config, scale)
    instruments = _make_instruments(rng, config)
    lighting = _make_lighting(rng, config)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for t in range(config.n_frames):
        yield _render_frame(rng, config, float(t), tissue, instruments, lighting, xx, yy, scale)


def _render_frame(
    rng: np.random.Generator,
    cfg: SynthConfig,
    t: float,
    tissue: _Tissue,
    instruments: list[_Instrument],
    lighting: _Lighting,
    xx: np.ndarray,
    yy: np.ndarray,
    scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    h, w = cfg.height, cfg.width
    warped = tissue.frame(t, xx, yy)
    image = np.ascontiguousarray(warped[..., :3])
    glint = warped[..., 3]
    pieces = []
    mask = np.zeros((h, w), np.uint8)
    for inst in instruments:
        for part in inst.parts(t):
            raster = _rasterise(part.polygon, h, w)
            if raster is not None:
                pieces.append((part, raster))
                mask[raster[0], raster[1]][raster[2]] = 1
    if pieces:
        _drop_shadow(image, mask, scale)
    reflection = image[::4, ::4].reshape(-1, 3).mean(axis=0)
    for part, (ys, xs, inside) in pieces:
        image[ys, xs][inside] = _shade(part, ys, xs, reflection)[inside]
    light = (lighting.vignette(t, xx, yy) * lighting.gain(t)).astype(np.float32)
    image *= light[..., None]
    glint = glint * (1 - mask) * np.float32(0.85 + 0.15 * math.sin(0.3 * t))
    image = image * (1.0 - glint[..., None]) + glint[..., None] * np.float32(1.1)
    image = cv2.GaussianBlur(image, (0, 0), 0.5 * scale)
    if rng.random() < cfg.blur_probability:
        image = _random_blur(rng, image, scale)
    image *= 255.0
    if cfg.noise_sigma > 0:
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(cfg.noise_sigma)
    frame = np.clip(image, 0, 255).astype(np.uint8)
    return frame, mask * np.uint8(255)


def render_sequence(config: SynthConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Render a whole synthetic sequence.

    Args:
        config: What to render; the same config always returns the same arrays.

    Returns:
        ``(frames, masks)``: lists of uint8 RGB (H, W, 3) and uint8 (H, W) in {0, 255}; the
        mask is the union of all instrument pixels.
    """
    frames, masks = [], []
    for frame, mask in iter_frames(config):
        frames.append(frame)
        masks.append(mask)
    return frames, masks


# --------------------------------------------------------------------------------------------
# Dataset on disk
# --------------------------------------------------------------------------------------------


def sequence_seed(seed: int, index: int) -> int:
    """The seed of sequence ``index`` in a dataset generated with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_dataset(
    out: str | Path,
    n_sequences: int,
    n_frames: int,
    size: tuple[int, int],
    seed: int,
    progress: bool = False,
) -> Path:
    """Write synthetic sequences in the generic layout ``out/seq_00/{images,masks}/*.png``.

    Everything is rendered into a hidden sibling directory first and renamed to ``out`` at the
    end, so a failure never leaves half a dataset behind.

    Args:
        out: Directory to create; it may exist only if it is empty.
        n_sequences: Number of sequences (>= 1).
        n_frames: Frames per sequence (>= 1).
        size: Frame size as ``(height, width)``, each 32..4096 px.
        seed: Non-negative seed; sequence ``k`` uses ``sequence_seed(seed, k)``.
        progress: Show a tqdm progress bar over all frames.

    Returns:
        ``out`` as a Path.

    Raises:
        InputError: For a bad count, size or seed, or if ``out`` exists and is not an empty
            directory.
    """
    out = Path(out)
    configs = _dataset_configs(n_sequences, n_frames, size, seed)
    _check_out_dir(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory next to {out}: {exc}") from exc
    try:
        _write_sequences(tmp, configs, progress)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _dataset_configs(
    n_sequences: int, n_frames: int, size: tuple[int, int], seed: int
) -> list[SynthConfig]:
    _check_int("n_sequences", n_sequences, 1, None)
    _check_int("n_frames", n_frames, 1, None)
    _check_int("seed", seed, 0, None)
    if not isinstance(size, tuple | list) or len(size) != 2:
        raise InputError(f"size={size!r} must be a (height, width) pair")
    for name, value in zip(("height", "width"), size, strict=True):
        if not isinstance(value, int | np.integer) or not MIN_SIDE <= value <= MAX_SIDE:
            raise InputError(
                f"size={tuple(size)!r} has {name} {value!r}, outside {MIN_SIDE}..{MAX_SIDE} px"
            )
    height, width = (int(v) for v in size)
    return [
        SynthConfig(height=height, width=width, n_frames=n_frames, seed=sequence_seed(seed, k))
        for k in range(n_sequences)
    ]


def _check_out_dir(out: Path) -> None:
    if out.is_dir():
        if any(out.iterdir()):
            raise InputError(f"output directory {out} is not empty; refusing to overwrite it")
    elif out.exists():
        raise InputError(f"output path {out} exists and is not a directory")


def _write_sequences(root: Path, configs: list[SynthConfig], progress: bool) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(c.n_frames for c in configs), desc="synthetic", unit="frame")
    width = max(2, len(str(len(configs) - 1)))
    try:
        for k, cfg in enumerate(configs):
            seq = root / f"seq_{k:0{width}d}"
            (seq / "images").mkdir(parents=True)
            (seq / "masks").mkdir()
            for i, (frame, mask) in enumerate(iter_frames(cfg)):
                _imwrite(
                    seq / "images" / _FRAME_NAME.format(i), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                )
                _imwrite(seq / "masks" / _FRAME_NAME.format(i), mask)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise InputError(f"could not write image file {path}")
