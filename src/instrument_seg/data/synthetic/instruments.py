"""Instruments of the synthetic scenes: each pivots about a remote point outside the image and
slides in and out along its shaft (so it always enters from the border), with a grey-metal or
black shaft, a metal wrist and two jaws that open and close; rasterised and shaded per part."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from instrument_seg.data.synthetic.config import MAX_INSTRUMENTS, SUBPIXEL_BITS, SynthConfig


@dataclass
class Part:
    """One convex piece of an instrument: polygon plus what is needed to shade it."""

    polygon: np.ndarray  # (k, 2) float (x, y)
    origin: np.ndarray  # a point on the part's axis
    normal: np.ndarray  # unit vector across the part
    half_width: float
    colour: np.ndarray  # (3,) float32
    shine: float
    grooves: tuple[np.ndarray, np.ndarray, float] | None = None  # (origin, direction, spacing)


@dataclass
class Instrument:
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

    def parts(self, t: float) -> list[Part]:
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

    def _jaw(self, hinge: np.ndarray, axis_angle: float, side: float, opening: float) -> Part:
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
        return Part(polygon, base, n, 0.24 * self.width, colour.astype(np.float32), 0.5)


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _perp(d: np.ndarray) -> np.ndarray:
    return np.array([-d[1], d[0]])


def _strip(
    start: np.ndarray, end: np.ndarray, width: float, colour: np.ndarray, shine: float
) -> Part:
    """A rectangle of ``width`` from ``start`` to ``end`` (a shaft seen side-on)."""
    d = (end - start) / max(float(np.linalg.norm(end - start)), 1e-6)
    n = _perp(d) * (width / 2)
    polygon = np.array([start + n, end + n, end - n, start - n])
    return Part(polygon, start, _perp(d), width / 2, colour, shine)


def _knuckle(centre: np.ndarray, angle: float, radius: float, colour: np.ndarray) -> Part:
    theta = np.linspace(0, 2 * math.pi, 20, endpoint=False)
    polygon = centre + radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return Part(polygon, centre, _perp(_unit(angle)), radius, colour * 0.95, 0.7)


def _make_instrument(
    rng: np.random.Generator, side: str, cfg: SynthConfig, slide_out: bool
) -> Instrument:
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
    return Instrument(
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


def make_instruments(rng: np.random.Generator, cfg: SynthConfig) -> list[Instrument]:
    n = (
        int(rng.integers(1, MAX_INSTRUMENTS + 1))
        if cfg.n_instruments is None
        else cfg.n_instruments
    )
    sides = ["left", "right", "bottom", "top"]
    chosen = rng.choice(sides, size=n, replace=False, p=[0.3, 0.3, 0.3, 0.1]) if n else []
    slide_out = int(rng.integers(0, n)) if n and rng.random() < 0.3 else -1
    return [_make_instrument(rng, str(s), cfg, k == slide_out) for k, s in enumerate(chosen)]


def rasterise(polygon: np.ndarray, h: int, w: int) -> tuple[slice, slice, np.ndarray] | None:
    """The polygon's bounding box in the image and a bool mask inside it (None if off-image)."""
    x0 = max(0, math.floor(polygon[:, 0].min()))
    y0 = max(0, math.floor(polygon[:, 1].min()))
    x1 = min(w, math.ceil(polygon[:, 0].max()) + 1)
    y1 = min(h, math.ceil(polygon[:, 1].max()) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((polygon - [x0, y0]) * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(local, [pts], 1, cv2.LINE_8, SUBPIXEL_BITS)
    if not local.any():
        return None
    return slice(y0, y1), slice(x0, x1), local.astype(bool)


def shade(part: Part, ys: slice, xs: slice, reflection: np.ndarray) -> np.ndarray:
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
