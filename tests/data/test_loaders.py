import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from instrument_seg.data import load_dataset
from instrument_seg.errors import InputError


class TestGeneric:
    def test_sequences_frames_and_masks(self, generic_tree):
        ds = load_dataset(generic_tree)
        assert ds.layout == "generic"
        assert [s.name for s in ds.sequences] == ["seq_a", "seq_b"]
        assert len(ds) == 5 and ds.has_masks
        seq = ds.sequences[0]
        assert [seq.frame_name(i) for i in range(3)] == ["f000", "f001", "f002"]
        image, mask = seq.image(1), seq.mask(1)
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert mask.dtype == bool and mask.shape == (48, 64) and mask.any()

    def test_single_sequence_directory(self, generic_tree):
        ds = load_dataset(generic_tree / "seq_b")
        assert len(ds.sequences) == 1 and len(ds) == 2

    def test_adjacent_pairs_stay_within_sequences(self, generic_tree):
        pairs = load_dataset(generic_tree).adjacent_pairs()
        assert [(a.sequence, a.index, b.sequence, b.index) for a, b in pairs] == [
            (0, 0, 0, 1),
            (0, 1, 0, 2),
            (1, 0, 1, 1),
        ]

    def test_random_pairs_never_pair_a_frame_with_itself(self, generic_tree):
        ds = load_dataset(generic_tree)
        pairs = ds.random_pairs(np.random.default_rng(0))
        assert len(pairs) == len(ds)
        assert all(a != b for a, b in pairs)

    def test_one_frame_sequence_is_paired_at_random_with_one_warning(self, generic_tree):
        for p in (generic_tree / "seq_b" / d / "f001.png" for d in ("images", "masks")):
            p.unlink()
        said = []
        pairs = load_dataset(generic_tree).adjacent_pairs(np.random.default_rng(0), said.append)
        assert [(a.sequence, a.index) for a, _ in pairs] == [(0, 0), (0, 1), (1, 0)]
        assert pairs[-1][1].sequence == 0  # a frame of another sequence
        assert len(said) == 1 and "seq_b" in said[0] and "one frame" in said[0]

    def test_a_single_frame_cannot_be_paired(self, generic_tree):
        import shutil

        shutil.rmtree(generic_tree / "seq_a")
        for p in (generic_tree / "seq_b" / d / "f001.png" for d in ("images", "masks")):
            p.unlink()
        with pytest.raises(InputError, match="holds 1 frame"):
            load_dataset(generic_tree).adjacent_pairs()

    def test_without_masks(self, generic_tree):
        for p in (generic_tree / "seq_a" / "masks").iterdir():
            p.unlink()
        (generic_tree / "seq_a" / "masks").rmdir()
        ds = load_dataset(generic_tree)
        assert not ds.sequences[0].has_masks and ds.sequences[0].mask(0) is None
        assert not ds.has_masks

    def test_mask_size_mismatch_names_the_file(self, generic_tree):
        bad = generic_tree / "seq_a" / "masks" / "f001.png"
        cv2.imwrite(str(bad), np.zeros((10, 10), np.uint8))
        with pytest.raises(InputError, match=r"f001\.png is 10x10 but its image is 48x64"):
            load_dataset(generic_tree).sequences[0].mask(1)

    def test_mask_size_mismatch_refused_when_loading(self, generic_tree):
        """``train`` never reads a mask: a wrong-size one is refused when the set is loaded,
        from the files' headers."""
        bad = generic_tree / "seq_b" / "masks" / "f001.png"
        cv2.imwrite(str(bad), np.zeros((48, 63), np.uint8))
        with pytest.raises(InputError, match=r"mask .*seq_b/masks/f001\.png is 48x63 but its"):
            load_dataset(generic_tree)

    def test_missing_mask_names_the_image(self, generic_tree):
        (generic_tree / "seq_a" / "masks" / "f002.png").unlink()
        with pytest.raises(InputError, match="no mask for image f002.png"):
            load_dataset(generic_tree)

    def test_unreadable_image(self, generic_tree):
        bad = generic_tree / "seq_a" / "images" / "f000.png"
        bad.write_bytes(b"not a png")
        with pytest.raises(InputError, match=r"cannot read image .*f000\.png"):
            load_dataset(generic_tree).sequences[0].image(0)

    @pytest.mark.parametrize(
        ("name", "cut", "words"),
        [
            ("f001.jpg", lambda d: d[: len(d) * 2 // 3], "truncated"),
            ("f001.jpg", lambda d: d[:-2], "no end-of-image marker"),
            ("f001.png", lambda d: d[:-20], "truncated"),
            ("f001.png", lambda d: d[:50] + bytes([d[50] ^ 0x55]) + d[51:], "CRC"),
        ],
        ids=["jpeg-cut", "jpeg-no-eoi", "png-cut", "png-corrupt"],
    )
    def test_truncated_or_corrupt_frame_named_and_silent(
        self, generic_tree, capfd, name, cut, words
    ):
        """OpenCV returns a truncated JPEG half grey (with a libjpeg line on stderr) and libpng
        prints its own line for a corrupt PNG: both are refused, with nothing on stderr."""
        images = generic_tree / "seq_a" / "images"
        rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        (images / "f001.png").unlink()
        ok, buf = cv2.imencode(name[-4:], rgb)
        (images / name).write_bytes(cut(buf.tobytes()))
        seq = load_dataset(generic_tree / "seq_a").sequences[0]
        with pytest.raises(InputError, match=rf"cannot read image .*{name}: .*{words}"):
            seq.image(1)
        assert capfd.readouterr().err == ""

    def test_complete_jpeg_frame_reads(self, generic_tree):
        images = generic_tree / "seq_a" / "images"
        (images / "f001.png").unlink()
        cv2.imwrite(str(images / "f001.jpg"), np.full((48, 64, 3), 77, np.uint8))
        frame = load_dataset(generic_tree / "seq_a").sequences[0].image(1)
        assert frame.shape == (48, 64, 3) and abs(int(frame.mean()) - 77) <= 1


class TestEndoVis:
    def test_crop_and_label_union_without_other(self, endovis_tree):
        ds = load_dataset(endovis_tree)
        assert ds.layout == "endovis" and len(ds) == 2
        seq = ds.sequences[0]
        assert seq.image(0).shape == (1024, 1280, 3)
        mask = seq.mask(0)
        assert mask.shape == (1024, 1280)
        # label rows 100:200 and 500:600, columns 400:800 -> crop offsets (28, 320)
        expected = np.zeros((1024, 1280), bool)
        expected[72:172, 80:480] = True
        expected[472:572, 80:480] = True
        np.testing.assert_array_equal(mask, expected)

    def test_dataset_folder_itself(self, endovis_tree):
        ds = load_dataset(endovis_tree / "instrument_dataset_1")
        assert len(ds.sequences) == 1

    def test_label_size_mismatch_refused_when_loading(self, endovis_tree):
        gt = endovis_tree / "instrument_dataset_1" / "ground_truth"
        cv2.imwrite(str(gt / "Other_labels" / "frame001.png"), np.zeros((1024, 1280), np.uint8))
        load_dataset(endovis_tree)  # "Other" is not instrument: not read, not checked
        bad = gt / "Right_Large_Needle_Driver_labels" / "frame001.png"
        cv2.imwrite(str(bad), np.zeros((1024, 1280), np.uint8))
        with pytest.raises(InputError, match=r"Needle_Driver_labels/frame001\.png is 1024x1280"):
            load_dataset(endovis_tree)

    def test_missing_label_names_folder_and_frame(self, endovis_tree):
        gt = endovis_tree / "instrument_dataset_1" / "ground_truth"
        (gt / "Left_Prograsp_Forceps_labels" / "frame001.png").unlink()
        with pytest.raises(InputError, match="Left_Prograsp_Forceps_labels.*frame001.png"):
            load_dataset(endovis_tree)


class TestVideo:
    def test_video_file_is_a_sequence(self, tmp_path: Path):
        path = tmp_path / "clip.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
        for i in range(4):
            writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
        writer.release()
        for target in (path, tmp_path):
            ds = load_dataset(target)
            assert ds.layout == "video" and len(ds) == 4
            assert ds.sequences[0].image(3).shape == (48, 64, 3)
            assert not ds.has_masks

    @pytest.mark.parametrize("data", [b"\x00" * 100, b"garbage " * 600], ids=["zeros", "text"])
    def test_corrupt_video(self, tmp_path: Path, data: bytes):
        path = tmp_path / "broken.mp4"
        path.write_bytes(data)
        with pytest.raises(InputError, match="cannot decode video"):
            load_dataset(path)

    def test_garbage_video_prints_nothing_of_ffmpeg(self, tmp_path: Path):
        """FFmpeg's "moov atom not found" line is not printed before the one sentence (a fresh
        interpreter: FFmpeg's log level is set when OpenCV first opens a video)."""
        path = tmp_path / "garbage.mp4"
        path.write_bytes(b"garbage " * 600)
        probe = (
            "import sys\n"
            "from instrument_seg.data import load_dataset\n"
            "from instrument_seg.errors import InputError\n"
            "try:\n"
            "    load_dataset(sys.argv[1])\n"
            "except InputError as exc:\n"
            "    print(exc)\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
        proc = subprocess.run(
            [sys.executable, "-c", probe, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert "cannot decode video" in proc.stdout and proc.stderr == "", proc.stderr


class TestBadPaths:
    def test_missing_directory(self, tmp_path: Path):
        with pytest.raises(InputError, match="does not exist"):
            load_dataset(tmp_path / "nope")

    def test_empty_directory(self, tmp_path: Path):
        with pytest.raises(InputError, match="no frames found"):
            load_dataset(tmp_path)

    def test_empty_images_folder(self, tmp_path: Path):
        (tmp_path / "seq" / "images").mkdir(parents=True)
        with pytest.raises(InputError, match="no image files"):
            load_dataset(tmp_path)
