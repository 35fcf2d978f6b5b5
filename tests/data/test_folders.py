"""The one writer of the generic layout (synthetic datasets and bag extraction both use it)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from instrument_seg.data import load_dataset
from instrument_seg.data.folders import SequenceFrames, sequence_frames, write_folders
from instrument_seg.errors import InputError


def frames(n: int, masks: bool, dtype=bool) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    rng = np.random.default_rng(n)
    out = []
    for i in range(n):
        rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        mask = None
        if masks:
            mask = np.zeros((24, 32), dtype)
            mask[4 + i : 12, 3:20] = 1 if dtype is bool else 255
        out.append((f"f{i:03d}", rgb, mask))
    return out


class TestWriteFolders:
    def test_round_trip(self, tmp_path: Path):
        a, b = frames(3, masks=True), frames(2, masks=False)
        ticks = []
        out = write_folders(
            tmp_path / "ds",
            [SequenceFrames("a", True, a), SequenceFrames("b", False, iter(b))],
            progress=lambda: ticks.append(1),
        )
        assert out == tmp_path / "ds" and len(ticks) == 5
        assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no hidden sibling left
        assert sorted(p.name for p in (out / "a").iterdir()) == ["images", "masks"]
        assert [p.name for p in (out / "b").iterdir()] == ["images"]
        ds = load_dataset(out)
        assert [s.name for s in ds.sequences] == ["a", "b"]
        for seq, want in zip(ds.sequences, (a, b), strict=True):
            for i, (name, rgb, mask) in enumerate(want):
                assert seq.frame_name(i) == name
                np.testing.assert_array_equal(seq.image(i), rgb)
                if mask is not None:
                    np.testing.assert_array_equal(seq.mask(i), mask)
        raw = cv2.imread(str(out / "a" / "masks" / "f001.png"), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint8 and set(np.unique(raw)) == {0, 255}

    def test_bool_and_0_255_masks_give_the_same_file(self, tmp_path: Path):
        for name, dtype in (("bool", bool), ("u8", np.uint8)):
            write_folders(tmp_path / name, [SequenceFrames("s", True, frames(1, True, dtype))])
        files = [(tmp_path / n / "s" / "masks" / "f000.png").read_bytes() for n in ("bool", "u8")]
        assert files[0] == files[1]

    def test_sequence_frames_of_a_loaded_sequence(self, tmp_path: Path):
        src = write_folders(tmp_path / "src", [SequenceFrames("s", True, frames(2, True))])
        copy = write_folders(tmp_path / "copy", map(sequence_frames, load_dataset(src).sequences))
        for sub in ("images", "masks"):
            for f in (src / "s" / sub).iterdir():
                assert (copy / "s" / sub / f.name).read_bytes() == f.read_bytes()

    def test_existing_empty_directory_is_used(self, tmp_path: Path):
        (tmp_path / "ds").mkdir()
        write_folders(tmp_path / "ds", [SequenceFrames("s", False, frames(1, False))])
        assert [p.name for p in tmp_path.iterdir()] == ["ds"]
        assert (tmp_path / "ds" / "s" / "images" / "f000.png").is_file()

    def test_refuses_non_empty_directory_and_file(self, tmp_path: Path):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "keep.txt").write_text("user data")
        with pytest.raises(InputError, match="not empty"):
            write_folders(tmp_path / "full", [SequenceFrames("s", False, frames(1, False))])
        (tmp_path / "file").write_bytes(b"x")
        with pytest.raises(InputError, match="not a directory"):
            write_folders(tmp_path / "file", [])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]

    def test_missing_parent(self, tmp_path: Path):
        with pytest.raises(InputError, match="cannot create output directory"):
            write_folders(tmp_path / "no" / "ds", [])

    def test_failure_leaves_nothing(self, tmp_path: Path):
        def failing():
            yield from frames(2, True)
            raise InputError("frame 2 is unreadable")

        (tmp_path / "ds").mkdir()
        with pytest.raises(InputError, match="frame 2"):
            write_folders(tmp_path / "ds", [SequenceFrames("s", True, failing())])
        assert [p.name for p in tmp_path.iterdir()] == ["ds"]
        assert not any((tmp_path / "ds").iterdir())
