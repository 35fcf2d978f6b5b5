"""Settings of a synthetic sequence, and the argument checks of the generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instrument_seg.errors import InputError

MIN_SIDE = 32
MAX_SIDE = 4096
MAX_INSTRUMENTS = 3
SUBPIXEL_BITS = 4  # fillPoly fixed-point precision: 1/16 px


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
        check_int("height", self.height, MIN_SIDE, MAX_SIDE)
        check_int("width", self.width, MIN_SIDE, MAX_SIDE)
        check_int("n_frames", self.n_frames, 1, None)
        check_int("seed", self.seed, 0, None)
        if self.n_instruments is not None:
            check_int("n_instruments", self.n_instruments, 0, MAX_INSTRUMENTS)
        check_float("blur_probability", self.blur_probability, 0.0, 1.0)
        check_float("tissue_motion", self.tissue_motion, 0.0, 4.0)
        check_float("motion_speed", self.motion_speed, 0.0, 4.0)
        check_float("noise_sigma", self.noise_sigma, 0.0, 50.0)


def check_int(name: str, value: object, low: int, high: int | None) -> None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise InputError(f"{name}={value!r} must be {bound}")


def check_float(name: str, value: object, low: float, high: float) -> None:
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    if not ok or not low <= float(value) <= high:
        raise InputError(f"{name}={value!r} must be a number in {low}..{high}")
