"""Shared fixtures: tiny generated datasets in both layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def toy_frame(h: int, w: int, shift: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Red textured tissue with a grey bar entering from the left border; returns (rgb, mask)."""
    rng = np.random.default_rng(seed)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = 170 + rng.integers(0, 40, (h, w))
    rgb[..., 1] = 50 + rng.integers(0, 20, (h, w))
    rgb[..., 2] = 50 + rng.integers(0, 20, (h, w))
    mask = np.zeros((h, w), bool)
    top = h // 3 + shift
    mask[top : top + max(2, h // 6), : w // 2] = True
    rgb[mask] = (150, 150, 155)
    return rgb, mask


@pytest.fixture
def generic_tree(tmp_path: Path) -> Path:
    """``root/seq_a`` (3 frames) and ``root/seq_b`` (2 frames), 48x64, with masks."""
    root = tmp_path / "generic"
    for name, n in (("seq_a", 3), ("seq_b", 2)):
        for i in range(n):
            rgb, mask = toy_frame(48, 64, shift=i, seed=i)
            write_rgb(root / name / "images" / f"f{i:03d}.png", rgb)
            (root / name / "masks").mkdir(exist_ok=True)
            cv2.imwrite(str(root / name / "masks" / f"f{i:03d}.png"), mask.astype(np.uint8) * 255)
    return root


@pytest.fixture
def endovis_tree(tmp_path: Path) -> Path:
    """One ``instrument_dataset_1`` with 2 raw 1080x1920 frames and two label folders + Other."""
    root = tmp_path / "endovis"
    ds = root / "instrument_dataset_1"
    for i in range(2):
        rgb = np.full((1080, 1920, 3), 30, np.uint8)
        write_rgb(ds / "left_frames" / f"frame{i:03d}.png", rgb)
        for folder, rows in (
            ("Left_Prograsp_Forceps_labels", slice(100, 200)),
            ("Right_Large_Needle_Driver_labels", slice(500, 600)),
            ("Other_labels", slice(800, 900)),
        ):
            label = np.zeros((1080, 1920), np.uint8)
            label[rows, 400:800] = 10 * (i + 1)
            path = ds / "ground_truth" / folder / f"frame{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), label)
    return root
