"""What the bags read and written here hold: message types, encodings, defaults, metadata keys."""

from __future__ import annotations

from instrument_seg.imagemsg import ENCODINGS, INPUT_ENCODINGS

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_GT_TOPIC = "/camera/gt_mask"
DEFAULT_FRAME_ID = "camera_optical_frame"
DEFAULT_RATE = 30.0
DEFAULT_START = 1_700_000_000  # seconds: fixed, so the same data always gives the same bag
STORAGES = ("mcap", "sqlite3")
BAG_FILE_SUFFIXES = (".mcap", ".db3")
# custom_data keys of bags written here (rosbag2 metadata.yaml, version >= 6)
META_PREFIX = "instrument_seg."
META_FORMAT = "1"

FRAME_ENCODINGS = INPUT_ENCODINGS
MASK_ENCODINGS = tuple(e for e in ENCODINGS if e != "32FC1")


def typestore():
    """The ``rosbags`` type store of the messages (ROS 2 Kilted definitions)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def stamp_text(stamp_ns: int) -> str:
    """Nanoseconds as ``SEC.NANOSEC`` (the way ``ros2 topic echo`` shows a stamp)."""
    return f"{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}"
