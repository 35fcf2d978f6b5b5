"""Tests of the procedural synthetic laparoscopy generator."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from instrument_seg.data import folders
from instrument_seg.data.synthetic import (
    SynthConfig,
    render_sequence,
    sequence_seed,
    write_dataset,
)
from instrument_seg.errors import InputError

SMALL = {"height": 96, "width": 120}


@pytest.fixture(scope="module")
def sequences() -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Six short sequences at 96x120 (different seeds, hence instrument counts and sides)."""
    return [render_sequence(SynthConfig(**SMALL, n_frames=10, seed=s)) for s in range(6)]


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_same_seed_gives_identical_arrays() -> None:
    cfg = SynthConfig(**SMALL, n_frames=4, seed=11)
    frames_a, masks_a = render_sequence(cfg)
    frames_b, masks_b = render_sequence(cfg)
    for a, b in zip(frames_a + masks_a, frames_b + masks_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_different_seed_gives_different_frames() -> None:
    frames_a, _ = render_sequence(SynthConfig(**SMALL, n_frames=2, seed=1))
    frames_b, _ = render_sequence(SynthConfig(**SMALL, n_frames=2, seed=2))
    assert not np.array_equal(frames_a[0], frames_b[0])


@pytest.mark.parametrize(("height", "width"), [(64, 80), (96, 120), (40, 200), (180, 48)])
def test_shapes_and_dtypes(height: int, width: int) -> None:
    frames, masks = render_sequence(SynthConfig(height=height, width=width, n_frames=3, seed=5))
    assert len(frames) == len(masks) == 3
    for frame, mask in zip(frames, masks, strict=True):
        assert frame.shape == (height, width, 3) and frame.dtype == np.uint8
        assert mask.shape == (height, width) and mask.dtype == np.uint8


def test_masks_are_binary_with_sane_instrument_fraction(sequences) -> None:
    fractions = []
    for _, masks in sequences:
        for mask in masks:
            assert set(np.unique(mask)) <= {0, 255}
            fractions.append(float((mask > 0).mean()))
    assert 0.03 < np.mean(fractions) < 0.5


def test_visible_instruments_touch_the_border(sequences) -> None:
    for _, masks in sequences:
        for mask in masks:
            if mask.any():
                assert _touches_border(mask)


def test_adjacent_frames_are_close_compared_with_unrelated_frames(sequences) -> None:
    (frames_a, _), (frames_b, _) = sequences[0], sequences[1]
    adjacent = [_mean_abs_diff(x, y) for x, y in zip(frames_a[:-1], frames_a[1:], strict=True)]
    unrelated = [_mean_abs_diff(x, y) for x, y in zip(frames_a, frames_b, strict=True)]
    assert np.median(adjacent) < 0.3 * np.median(unrelated)


def test_tissue_is_red_dominant_and_instruments_are_not(sequences) -> None:
    for frames, masks in sequences:
        frame, mask = frames[0], masks[0] > 0
        tissue = frame[~mask].astype(np.float32).mean(axis=0)
        assert tissue[0] > tissue[1] and tissue[0] > tissue[2]
        if mask.sum() > 50:
            tool = frame[mask].astype(np.float32)
            tool_redness = (tool[:, 0] - tool[:, 1]).mean()
            assert tool_redness < 0.5 * (tissue[0] - tissue[1])


def test_no_instruments_gives_empty_masks() -> None:
    frames, masks = render_sequence(SynthConfig(**SMALL, n_frames=2, seed=3, n_instruments=0))
    assert all(not m.any() for m in masks)
    assert frames[0].mean() > 20


@pytest.mark.parametrize(
    "kwargs",
    [
        {"height": 31},
        {"width": 8},
        {"n_frames": 0},
        {"seed": -1},
        {"n_instruments": 4},
        {"blur_probability": 1.5},
        {"height": 64.0},
    ],
)
def test_bad_config_raises_input_error(kwargs: dict) -> None:
    with pytest.raises(InputError):
        SynthConfig(**kwargs)


def test_write_dataset_layout_matches_render_sequence(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "synth", n_sequences=2, n_frames=3, size=(64, 80), seed=7)
    assert out == tmp_path / "synth"
    assert sorted(p.name for p in out.iterdir()) == ["seq_00", "seq_01"]
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # no temp dir left behind
    frames, masks = render_sequence(
        SynthConfig(height=64, width=80, n_frames=3, seed=sequence_seed(7, 1))
    )
    for i in range(3):
        image = cv2.imread(str(out / "seq_01" / "images" / f"frame_{i:04d}.png"))
        mask = cv2.imread(
            str(out / "seq_01" / "masks" / f"frame_{i:04d}.png"), cv2.IMREAD_UNCHANGED
        )
        np.testing.assert_array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), frames[i])
        np.testing.assert_array_equal(mask, masks[i])


def test_write_dataset_accepts_empty_dir_and_shows_progress(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    out = write_dataset(tmp_path / "empty", 1, 2, (48, 48), seed=0, progress=True)
    assert len(list((out / "seq_00" / "images").iterdir())) == 2
    assert "synthetic" in capsys.readouterr().err


def test_write_dataset_refuses_non_empty_dir(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(InputError, match="not empty"):
        write_dataset(out, 1, 1, (64, 80), seed=0)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_write_dataset_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file.png"
    path.write_bytes(b"x")
    with pytest.raises(InputError):
        write_dataset(path, 1, 1, (64, 80), seed=0)


@pytest.mark.parametrize(
    ("n_sequences", "n_frames", "size"),
    [(0, 1, (64, 80)), (1, 0, (64, 80)), (1, 1, (31, 80)), (1, 1, (64, 16)), (1, 1, (64,))],
)
def test_write_dataset_rejects_bad_arguments(tmp_path: Path, n_sequences, n_frames, size) -> None:
    with pytest.raises(InputError):
        write_dataset(tmp_path / "out", n_sequences, n_frames, size, seed=0)
    assert not (tmp_path / "out").exists()


def test_write_dataset_failure_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def failing_imwrite(path: Path, image: np.ndarray, what: str) -> None:
        calls.append(path)
        if len(calls) > 3:
            raise OSError("disk full")
        cv2.imwrite(str(path), image)

    monkeypatch.setattr(folders, "_write_png", failing_imwrite)
    with pytest.raises(OSError):
        write_dataset(tmp_path / "out", 2, 2, (64, 80), seed=0)
    assert list(tmp_path.iterdir()) == []
