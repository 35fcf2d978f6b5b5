"""Frames of a synthetic sequence: tissue, instruments with their shadow, lighting, blur and
sensor noise, with the mask rasterised from the same polygons before any blur."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from instrument_seg.data.synthetic.config import SynthConfig
from instrument_seg.data.synthetic.instruments import (
    Instrument,
    make_instruments,
    rasterise,
    shade,
)
from instrument_seg.data.synthetic.tissue import Tissue, make_tissue


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
    tissue = make_tissue(rng, config, scale)
    instruments = make_instruments(rng, config)
    lighting = _make_lighting(rng, config)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for t in range(config.n_frames):
        yield _render_frame(rng, config, float(t), tissue, instruments, lighting, xx, yy, scale)


def _render_frame(
    rng: np.random.Generator,
    cfg: SynthConfig,
    t: float,
    tissue: Tissue,
    instruments: list[Instrument],
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
            raster = rasterise(part.polygon, h, w)
            if raster is not None:
                pieces.append((part, raster))
                mask[raster[0], raster[1]][raster[2]] = 1
    if pieces:
        _drop_shadow(image, mask, scale)
    reflection = image[::4, ::4].reshape(-1, 3).mean(axis=0)
    for part, (ys, xs, inside) in pieces:
        image[ys, xs][inside] = shade(part, ys, xs, reflection)[inside]
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
