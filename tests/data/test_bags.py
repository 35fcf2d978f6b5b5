"""rosbag2 bags: ``instrument-seg bag`` writes them, ``load_dataset`` reads them back.

No ROS: bags are read and written with the pure-Python ``rosbags`` library, and checked here
with it directly too (topics, encodings, header stamps), independently of data/bags.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from cli_support import assert_one_sentence_error
from cli_support import run_cli as cli
from instrument_seg.data import load_dataset
from instrument_seg.data.bags import (
    DEFAULT_GT_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    DEFAULT_START,
    decode_frame,
    decode_mask,
    open_bag,
)
from instrument_seg.data.synthetic import write_dataset
from instrument_seg.errors import InputError

STORE = get_typestore(Stores.ROS2_KILTED)
IMAGE = "sensor_msgs/msg/Image"
TINY = [
    "data.size=[48,64]",
    "features.size=[48,64]",
    "model.encoder=unet",
    "model.width=4",
    "model.depth=2",
]


def raw_messages(bag: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(bag timestamp, deserialized message)] read with rosbags directly."""
    out: dict[str, list[tuple[int, object]]] = {}
    with Reader(bag) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, STORE.deserialize_cdr(raw, conn.msgtype)))
    return out


def image_msg(pixels: np.ndarray, encoding: str, sec: int, nanosec: int = 0):
    types = STORE.types
    h, w = pixels.shape[:2]
    data = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
    return types[IMAGE](
        header=types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id="cam"
        ),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=data.size // h,
        data=data,
    )


def write_raw_bag(path: Path, topics: dict[str, list], storage=StoragePlugin.MCAP) -> Path:
    """A bag made directly with rosbags: topic -> list of Image messages (stamp = bag time)."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        for topic, msgs in topics.items():
            conn = writer.add_connection(topic, IMAGE, typestore=STORE)
            for msg in msgs:
                t = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                writer.write(conn, t, STORE.serialize_cdr(msg, IMAGE))
    return path


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """Two synthetic sequences (3 and 3 frames, 48x64) with masks, generic layout."""
    return write_dataset(tmp_path_factory.mktemp("bags") / "data", 2, 3, (48, 64), seed=3)


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def written(request, synth, tmp_path_factory) -> tuple[Path, str, subprocess.CompletedProcess]:
    bag = tmp_path_factory.mktemp(f"bag_{request.param}") / "synth.bag"
    proc = cli("bag", "--data", synth, "--out", bag, "--storage", request.param, "--rate", 20)
    return bag, request.param, proc


@pytest.fixture(scope="module")
def one_bag(synth, tmp_path_factory) -> Path:
    """An mcap bag of ``synth`` written by the library (for the bad-input cases)."""
    from instrument_seg.data.bags import write_bag

    bag = tmp_path_factory.mktemp("one") / "synth.bag"
    write_bag(load_dataset(synth), bag)
    return bag


def assert_same_frames(a, b) -> None:
    assert [s.name for s in a.sequences] == [s.name for s in b.sequences]
    assert a.has_masks == b.has_masks
    for sa, sb in zip(a.sequences, b.sequences, strict=True):
        assert len(sa) == len(sb)
        for i in range(len(sa)):
            assert sa.frame_name(i) == sb.frame_name(i)
            np.testing.assert_array_equal(sa.image(i), sb.image(i))
            ga, gb = sa.mask(i), sb.mask(i)
            assert (ga is None) == (gb is None)
            if ga is not None:
                assert ga.dtype == gb.dtype == bool
                np.testing.assert_array_equal(ga, gb)


class TestWrite:
    def test_summary_and_storage(self, written):
        bag, storage, proc = written
        assert proc.stdout.splitlines()[-1] == (
            f"bag: wrote 6 frame(s) (2 sequence(s), 48x64) on {DEFAULT_IMAGE_TOPIC} with masks "
            f"on {DEFAULT_GT_TOPIC} at 20 Hz to {bag} ({storage})"
        )
        suffix = {"mcap": ".mcap", "sqlite3": ".db3"}[storage]
        assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", f"synth.bag{suffix}"]
        assert not list(bag.parent.glob(".*tmp*")), "temporary directory left behind"

    def test_messages_read_with_rosbags_directly(self, written, synth):
        bag, _, _ = written
        msgs = raw_messages(bag)
        assert set(msgs) == {DEFAULT_IMAGE_TOPIC, DEFAULT_GT_TOPIC}
        images, masks = msgs[DEFAULT_IMAGE_TOPIC], msgs[DEFAULT_GT_TOPIC]
        assert len(images) == len(masks) == 6
        source = load_dataset(synth)
        frames = [(s, i) for s in source.sequences for i in range(len(s))]
        for k, ((t_img, img), (t_gt, gt), (seq, i)) in enumerate(
            zip(images, masks, frames, strict=True)
        ):
            expected = DEFAULT_START * 1_000_000_000 + round(k * 1e9 / 20)
            for t, msg in ((t_img, img), (t_gt, gt)):
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                assert stamp == t == expected
                assert msg.header.frame_id == "camera_optical_frame"
                assert (msg.height, msg.width, msg.is_bigendian) == (48, 64, 0)
            assert (img.encoding, img.step, gt.encoding, gt.step) == ("rgb8", 192, "mono8", 64)
            np.testing.assert_array_equal(img.data.reshape(48, 64, 3), seq.image(i))
            values = gt.data.reshape(48, 64)
            assert set(np.unique(values).tolist()) <= {0, 255}
            np.testing.assert_array_equal(values > 0, seq.mask(i))

    def test_reads_back_frame_exact(self, written, synth):
        bag, _, _ = written
        back = load_dataset(bag)
        assert back.layout == "rosbag2" and len(back) == 6
        assert_same_frames(load_dataset(synth), back)

    def test_random_access(self, written, synth):
        bag, _, _ = written
        (seq, *_), (ref, *_) = load_dataset(bag).sequences, load_dataset(synth).sequences
        for i in (2, 0, 0, 1, 2):
            np.testing.assert_array_equal(seq.image(i), ref.image(i))
            np.testing.assert_array_equal(seq.mask(i), ref.mask(i))

    def test_replay_accessors(self, written):
        bag, _, _ = written
        seqs = open_bag(bag)
        second = seqs[1]
        assert second.stamp(0) == (DEFAULT_START, 150_000_000)  # frame 3 at 20 Hz
        assert second.log_time(0) == DEFAULT_START * 1_000_000_000 + 150_000_000
        assert second.frame_id(0) == "camera_optical_frame"

    def test_extract_writes_the_generic_layout(self, written, synth, tmp_path):
        bag, _, _ = written
        proc = cli("bag", "--extract", bag, "--out", tmp_path / "ex")
        assert proc.stdout.splitlines()[-1].startswith("bag: extracted 6 frame(s) in 2 sequence")
        assert sorted(p.name for p in (tmp_path / "ex" / "seq_00" / "images").iterdir()) == [
            "frame_0000.png",
            "frame_0001.png",
            "frame_0002.png",
        ]
        assert_same_frames(load_dataset(synth), load_dataset(tmp_path / "ex"))
        assert [p.name for p in tmp_path.iterdir()] == ["ex"]  # no hidden sibling left

    def test_a_bag_of_a_bag(self, written, synth, tmp_path):
        bag, _, _ = written
        cli("bag", "--data", bag, "--out", tmp_path / "again", "--storage", "sqlite3")
        assert_same_frames(load_dataset(synth), load_dataset(tmp_path / "again"))

    def test_directory_of_bags(self, written, synth):
        bag, _, _ = written
        ds = load_dataset(bag.parent)
        assert ds.layout == "rosbag2" and len(ds.sequences) == 2


def test_endovis_layout_to_bag(endovis_tree, tmp_path):
    bag = tmp_path / "endovis_bag"
    proc = cli("bag", "--data", endovis_tree, "--out", bag, "--storage", "sqlite3")
    assert "(1 sequence(s), 1024x1280)" in proc.stdout
    assert_same_frames(load_dataset(endovis_tree), load_dataset(bag))


def test_video_to_bag_has_no_ground_truth(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(3):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    bag = tmp_path / "clip_bag"
    proc = cli("bag", "--data", video, "--out", bag)
    assert "with no ground truth" in proc.stdout
    assert set(raw_messages(bag)) == {DEFAULT_IMAGE_TOPIC}
    back = load_dataset(bag)
    assert not back.has_masks and back.sequences[0].mask(0) is None
    assert_same_frames(load_dataset(video), back)


def test_train_and_cues_accept_a_bag(tmp_path):
    data = write_dataset(tmp_path / "data", 1, 3, (48, 64), seed=1)
    bag = tmp_path / "data_bag"
    cli("bag", "--data", data, "--out", bag)
    proc = cli("cues", "--data", bag, "--json", tmp_path / "cues.json", *TINY[:1])
    assert proc.stdout.splitlines()[-1].startswith("cues: 3 frame(s) (rosbag2)")
    from_folder = cli("cues", "--data", data, "--json", tmp_path / "cues_dir.json", *TINY[:1])
    a = json.loads((tmp_path / "cues.json").read_text())
    b = json.loads((tmp_path / "cues_dir.json").read_text())
    assert a["combinations"] == b["combinations"], from_folder.stdout
    proc = cli(
        "train",
        "--data",
        bag,
        "--out",
        tmp_path / "run",
        "train.steps=2",
        "train.threads=1",
        *TINY,
    )
    assert proc.stdout.splitlines()[-1].startswith("train: 2 steps on 3 frames (2 pairs")
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


class TestDecoding:
    """Encodings a user's own recording may hold, read as cv_bridge's imgmsg_to_cv2 does."""

    def test_frame_encodings(self):
        rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
        cases = {
            "rgb8": rgb,
            "bgr8": rgb[..., ::-1],
            "rgba8": np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2),
            "bgra8": np.concatenate([rgb[..., ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2),
        }
        for encoding, pixels in cases.items():
            out = decode_frame(image_msg(pixels, encoding, 1), IMAGE, "test")
            np.testing.assert_array_equal(out, rgb, err_msg=encoding)
        grey = rgb[..., 0]
        np.testing.assert_array_equal(
            decode_frame(image_msg(grey, "mono8", 1), IMAGE, "t"), np.repeat(grey[..., None], 3, 2)
        )
        wide = grey.astype(np.uint16) * 257
        np.testing.assert_array_equal(
            decode_frame(image_msg(wide, "mono16", 1), IMAGE, "t")[..., 1], grey
        )

    def test_row_padding(self):
        rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
        padded = np.zeros((2, 12), np.uint8)
        padded[:, :9] = rgb.reshape(2, 9)
        msg = image_msg(padded, "mono8", 1)
        msg.width, msg.encoding, msg.step = 3, "rgb8", 12
        np.testing.assert_array_equal(decode_frame(msg, IMAGE, "t"), rgb)

    def test_compressed(self):
        rgb = np.zeros((8, 10, 3), np.uint8)
        rgb[2:5, 3:7] = (200, 30, 10)
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        msg = STORE.types["sensor_msgs/msg/CompressedImage"](
            header=image_msg(rgb, "rgb8", 1).header, format="png", data=png.reshape(-1)
        )
        compressed = "sensor_msgs/msg/CompressedImage"
        np.testing.assert_array_equal(decode_frame(msg, compressed, "t"), rgb)
        np.testing.assert_array_equal(decode_mask(msg, compressed, "t"), rgb.max(axis=2) > 0)

    def test_bad_messages(self):
        msg = image_msg(np.zeros((4, 4), np.uint8), "mono8", 1)
        msg.encoding = "yuv422"
        with pytest.raises(InputError, match="unsupported encoding 'yuv422'"):
            decode_mask(msg, IMAGE, "frame at stamp 1")
        with pytest.raises(InputError, match="not a camera image"):
            decode_frame(image_msg(np.zeros((4, 4), np.uint16), "16UC1", 1), IMAGE, "t")
        short = image_msg(np.zeros((4, 4), np.uint8), "mono8", 1)
        short.data = short.data[:-3]
        with pytest.raises(InputError, match="malformed"):
            decode_frame(short, IMAGE, "t")


FORGED = "rgb8\n[FATAL] [1.0] [segmentation_node]: x\x1b[31m"
COMPRESSED = "sensor_msgs/msg/CompressedImage"


def assert_not_forged(text: str) -> None:
    """No line of ``text`` starts with the forged ``[FATAL]`` and no raw ANSI escape is left."""
    assert "\x1b" not in text, text
    assert not any(line.startswith("[FATAL]") for line in text.splitlines()), text


class TestForgedStrings:
    """Encodings and formats come from the bag: printed escaped, on one line."""

    def test_forged_encoding_in_a_frame(self, tmp_path):
        frames = [image_msg(np.zeros((8, 8, 3), np.uint8), "rgb8", 10 + k) for k in range(2)]
        frames[1].encoding = FORGED
        bag = write_raw_bag(tmp_path / "forged", {DEFAULT_IMAGE_TOPIC: frames})
        for args in (("bag", "--extract", bag, "--out", tmp_path / "ex"), ("cues", "--data", bag)):
            proc = cli(*args, check=False)
            error = assert_one_sentence_error(proc, "has encoding 'rgb8\\n[FATAL]", "\\x1b[31m")
            assert_not_forged(proc.stderr)
            assert error.endswith("(supported: rgb8, bgr8, rgba8, bgra8, mono8, mono16)")
        assert not (tmp_path / "ex").exists()

    def test_forged_encoding_decoded(self):
        msg = image_msg(np.zeros((4, 4), np.uint8), "mono8", 1)
        msg.encoding = FORGED
        for decode in (decode_frame, decode_mask):
            with pytest.raises(InputError) as info:
                decode(msg, IMAGE, "frame at stamp 1")
            assert "\n" not in str(info.value) and "\\n[FATAL]" in str(info.value)
            assert_not_forged(str(info.value))

    def test_forged_format_of_a_compressed_frame(self, tmp_path):
        types = STORE.types
        header = types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=10, nanosec=0), frame_id="cam"
        )
        data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].reshape(-1)[:-40]
        msg = types[COMPRESSED](header=header, format=FORGED, data=data)
        with pytest.raises(InputError) as info:
            decode_frame(msg, COMPRESSED, "frame at stamp 10")
        assert "truncated" in str(info.value) and "\\n[FATAL]" in str(info.value)
        assert_not_forged(str(info.value))
        bag = tmp_path / "forged_jpeg"
        with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            conn = writer.add_connection(DEFAULT_IMAGE_TOPIC, COMPRESSED, typestore=STORE)
            writer.write(conn, 10_000_000_000, STORE.serialize_cdr(msg, COMPRESSED))
        proc = cli("bag", "--extract", bag, "--out", tmp_path / "ex", check=False)
        assert_one_sentence_error(proc, "cannot be decoded", "truncated")
        assert_not_forged(proc.stderr)
        assert not (tmp_path / "ex").exists()

    def test_forged_sequence_name_in_the_metadata(self, one_bag, tmp_path):
        import shutil

        import yaml

        bag = Path(shutil.copytree(one_bag, tmp_path / "bag"))
        meta = yaml.safe_load((bag / "metadata.yaml").read_text())
        custom = meta["rosbag2_bagfile_information"]["custom_data"]
        plan = json.loads(custom["instrument_seg.sequences"])
        plan[0]["name"] = "seq\n[FATAL] x\x1b[31m"
        custom["instrument_seg.sequences"] = json.dumps(plan)
        (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
        proc = cli("bag", "--extract", bag, "--out", tmp_path / "ex", check=False)
        assert_one_sentence_error(proc, "names a sequence or frame 'seq\\n[FATAL]", "file name")
        assert_not_forged(proc.stderr)
        assert not (tmp_path / "ex").exists()

    def test_forged_topic_name(self, tmp_path):
        frame = image_msg(np.zeros((8, 8, 3), np.uint8), "rgb8", 10)
        bag = write_raw_bag(tmp_path / "t", {"/a\n[FATAL] x\x1b[31m": [frame], "/b": [frame]})
        with pytest.raises(InputError) as info:
            open_bag(bag)
        assert "'/a\\n[FATAL] x\\x1b[31m'" in str(info.value) and " /b " in str(info.value)
        assert_not_forged(str(info.value))


class TestBadInput:
    """One sentence, exit 2, nothing written."""

    def test_bag_path_missing(self, tmp_path):
        proc = cli("bag", "--extract", tmp_path / "nope", "--out", tmp_path / "ex", check=False)
        assert_one_sentence_error(proc, f"bag {tmp_path / 'nope'} does not exist")
        assert not (tmp_path / "ex").exists()
        proc = cli("bag", "--data", tmp_path / "nope", "--out", tmp_path / "b", check=False)
        assert_one_sentence_error(proc, str(tmp_path / "nope"), "does not exist")
        assert not (tmp_path / "b").exists()

    def test_topic_absent_lists_the_topics_present(self, one_bag, tmp_path):
        bag = one_bag
        out = tmp_path / "ex"
        proc = cli(
            "bag", "--extract", bag, "--image-topic", "/rig/left", "--out", out, check=False
        )
        error = assert_one_sentence_error(proc, "image topic /rig/left is not in bag", str(bag))
        assert f"{DEFAULT_GT_TOPIC} (sensor_msgs/msg/Image, 6 messages)" in error
        assert f"{DEFAULT_IMAGE_TOPIC} (sensor_msgs/msg/Image, 6 messages)" in error
        assert not out.exists()
        proc = cli("bag", "--extract", bag, "--gt-topic", "/labels", "--out", out, check=False)
        assert_one_sentence_error(proc, "ground-truth topic /labels is not in bag")

    def test_ground_truth_size_mismatch(self, tmp_path):
        frames = [image_msg(np.zeros((48, 64, 3), np.uint8), "rgb8", 10 + k) for k in range(2)]
        masks = [image_msg(np.zeros((48, 64), np.uint8), "mono8", 10)]
        masks.append(image_msg(np.zeros((24, 32), np.uint8), "mono8", 11))
        bag = write_raw_bag(
            tmp_path / "bad", {DEFAULT_IMAGE_TOPIC: frames, DEFAULT_GT_TOPIC: masks}
        )
        proc = cli("bag", "--extract", bag, "--out", tmp_path / "ex", check=False)
        assert_one_sentence_error(
            proc, "ground truth at stamp 11.000000000 on /camera/gt_mask is 32x24", "64x48"
        )
        assert not (tmp_path / "ex").exists()
        proc = cli("train", "--data", bag, "--out", tmp_path / "run", *TINY, check=False)
        assert_one_sentence_error(proc, "is 32x24 but its frame")
        assert not (tmp_path / "run").exists()

    def test_frame_without_ground_truth(self, tmp_path):
        frames = [image_msg(np.zeros((8, 8, 3), np.uint8), "rgb8", 10 + k) for k in range(2)]
        masks = [image_msg(np.zeros((8, 8), np.uint8), "mono8", 10)]
        bag = write_raw_bag(
            tmp_path / "partial", {DEFAULT_IMAGE_TOPIC: frames, DEFAULT_GT_TOPIC: masks}
        )
        with pytest.raises(InputError, match="frame at stamp 11.000000000 .* has no ground truth"):
            open_bag(bag)

    def test_empty_bag(self, tmp_path):
        bag = write_raw_bag(tmp_path / "empty", {DEFAULT_IMAGE_TOPIC: []})
        proc = cli("bag", "--extract", bag, "--out", tmp_path / "ex", check=False)
        assert_one_sentence_error(proc, f"bag {bag} is empty")
        proc = cli("cues", "--data", bag, check=False)
        assert_one_sentence_error(proc, "is empty")
        assert not (tmp_path / "ex").exists()

    def test_topic_without_messages(self, tmp_path):
        frames = [image_msg(np.zeros((8, 8, 3), np.uint8), "rgb8", 10)]
        bag = write_raw_bag(tmp_path / "nogt", {DEFAULT_IMAGE_TOPIC: frames, "/labels": []})
        with pytest.raises(InputError, match="topic /labels in bag .* holds no messages"):
            open_bag(bag, gt_topic="/labels")

    def test_ambiguous_image_topics(self, tmp_path):
        frame = image_msg(np.zeros((8, 8, 3), np.uint8), "rgb8", 10)
        bag = write_raw_bag(tmp_path / "two", {"/left": [frame], "/right": [frame]})
        with pytest.raises(InputError, match="has 2 image topics .* /left .* /right"):
            open_bag(bag)
        assert len(open_bag(bag, image_topic="/right")[0]) == 1

    def test_not_a_bag(self, tmp_path):
        (tmp_path / "dir").mkdir()
        with pytest.raises(InputError, match="is not a rosbag2 bag"):
            open_bag(tmp_path / "dir")
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
        proc = cli("bag", "--extract", broken, "--out", tmp_path / "ex", check=False)
        assert_one_sentence_error(proc, f"cannot read bag {broken}")

    def test_output_exists(self, one_bag, synth):
        bag = one_bag
        before = sorted(p.name for p in bag.iterdir())
        proc = cli("bag", "--data", synth, "--out", bag, check=False)
        assert_one_sentence_error(proc, f"output bag {bag} already exists")
        assert sorted(p.name for p in bag.iterdir()) == before

    def test_failure_while_writing_leaves_nothing(self, tmp_path):
        data = write_dataset(tmp_path / "data", 1, 3, (48, 64), seed=2)
        # the last mask has another size: found only when the writer reaches it
        cv2.imwrite(str(data / "seq_00" / "masks" / "frame_0002.png"), np.zeros((8, 8), np.uint8))
        proc = cli("bag", "--data", data, "--out", tmp_path / "b", check=False)
        assert_one_sentence_error(proc, "frame_0002.png is 8x8 but its image is 48x64")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]

    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--rate", "0"], "rate 0.0 Hz must be a positive number"),
            (["--image-topic", "camera"], "image topic 'camera' is not an absolute ROS topic"),
            (["--gt-topic", "/camera/image_raw"], "image and ground-truth topic are both"),
        ],
    )
    def test_bad_values(self, synth, tmp_path, args, words):
        proc = cli("bag", "--data", synth, "--out", tmp_path / "b", *args, check=False)
        assert_one_sentence_error(proc, words)
        assert not (tmp_path / "b").exists()
