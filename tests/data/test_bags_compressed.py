"""Bags of ``sensor_msgs/CompressedImage`` frames: ``instrument-seg bag --compressed`` writes them
(as image_transport records a camera), ``load_dataset`` reads them back as a dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from cli_support import run_cli as cli
from instrument_seg.data import load_dataset
from instrument_seg.data.synthetic import write_dataset
from instrument_seg.errors import InputError

COMPRESSED = "sensor_msgs/msg/CompressedImage"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("cbags") / "data", 2, 2, (48, 64), seed=5)


@pytest.mark.parametrize(
    ("flag", "codec"), [(["--compressed"], "jpeg"), (["--compressed", "png"], "png")]
)
def test_written_as_compressed_frames_and_read_back(synth, tmp_path, flag, codec):
    bag = tmp_path / f"{codec}.bag"
    proc = cli("bag", "--data", synth, "--out", bag, *flag)
    assert "/camera/image_raw/compressed" in proc.stdout.strip().splitlines()[-1]
    with Reader(bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    assert types == {
        "/camera/image_raw/compressed": COMPRESSED,
        "/camera/gt_mask": "sensor_msgs/msg/Image",
    }
    original, back = load_dataset(synth), load_dataset(bag)
    assert back.has_masks and [len(s) for s in back.sequences] == [2, 2]
    for sa, sb in zip(original.sequences, back.sequences, strict=True):
        for i in range(len(sa)):
            a, b = sa.image(i), sb.image(i)
            assert b.shape == a.shape and b.dtype == np.uint8
            if codec == "png":
                np.testing.assert_array_equal(a, b)  # lossless
            else:
                assert np.abs(a.astype(int) - b).mean() < 8  # JPEG quality 95
            np.testing.assert_array_equal(sa.mask(i), sb.mask(i))  # masks stay exact


def test_unknown_codec_refused(synth, tmp_path):
    from instrument_seg.data.bags import write_bag

    with pytest.raises(InputError, match="compressed 'gif' is not one of jpeg, png"):
        write_bag(load_dataset(synth), tmp_path / "x.bag", compressed="gif")
    assert not (tmp_path / "x.bag").exists()
