"""rosbag2 recordings as datasets, and datasets as rosbag2 recordings (no ROS needed).

Uses the pure-Python ``rosbags`` library, so this package never imports rclpy: a bag directory
(``metadata.yaml`` + ``.mcap`` or ``.db3`` storage) or a bare ``.mcap`` / ``.db3`` file is
read and written on machines without ROS.

**Reading** (:func:`open_bag`, and :func:`instrument_seg.data.load_dataset` for a bag path):
frames come from one ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage`` topic in
recording order; ground truth (optional) from a second topic, paired with its frame by
**identical header stamp**. Any non-zero ground-truth pixel is instrument. Image encodings:
``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``, ``mono16`` (scaled by 255 / 65535, as
cv_bridge does), plus ``8UC1`` / ``16UC1`` for masks. Topics are chosen as follows:

1. the topics given explicitly;
2. else the topics a bag written by :func:`write_bag` names in its metadata
   (``custom_data``), which also splits it back into the original sequences and frame names;
3. else :data:`DEFAULT_IMAGE_TOPIC` / :data:`DEFAULT_GT_TOPIC` when present, or the bag's only
   image topic (no ground truth).

A bag without instrument_seg metadata is one sequence named after the bag, frames
``frame000000``, ``frame000001``... When a ground-truth topic is used, every frame must have a
mask with its stamp and size; any problem is an :class:`~instrument_seg.errors.InputError`
naming the bag, topic and stamp, raised when the bag is opened (before anything is computed or
written).

**Writing** (:func:`write_bag`): frames as ``rgb8`` and masks as ``mono8`` (0 / 255) with
identical header stamps ``start + k / rate``, written to a hidden sibling directory and renamed
at the end. :func:`extract_bag` writes a bag back out as the generic folder layout.

Modules: :mod:`.format` (message types, defaults, metadata keys), :mod:`.decoding` (messages to
NumPy), :mod:`.reader`, :mod:`.writer`, :mod:`.export` (bag to folders). Everything public is
importable from here.
"""

from instrument_seg.data.bags.decoding import decode_frame, decode_mask
from instrument_seg.data.bags.export import extract_bag
from instrument_seg.data.bags.format import (
    BAG_FILE_SUFFIXES,
    COMPRESSED_TYPE,
    DEFAULT_FRAME_ID,
    DEFAULT_GT_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    DEFAULT_RATE,
    DEFAULT_START,
    FRAME_ENCODINGS,
    IMAGE_TYPE,
    IMAGE_TYPES,
    MASK_ENCODINGS,
    META_FORMAT,
    META_PREFIX,
    STORAGES,
    stamp_text,
)
from instrument_seg.data.bags.reader import (
    BagIndex,
    BagSequence,
    TopicInfo,
    bag_dataset,
    bag_topics,
    describe_topics,
    is_bag,
    open_bag,
)
from instrument_seg.data.bags.writer import BagWriteResult, write_bag

__all__ = [
    "BAG_FILE_SUFFIXES",
    "COMPRESSED_TYPE",
    "DEFAULT_FRAME_ID",
    "DEFAULT_GT_TOPIC",
    "DEFAULT_IMAGE_TOPIC",
    "DEFAULT_RATE",
    "DEFAULT_START",
    "FRAME_ENCODINGS",
    "IMAGE_TYPE",
    "IMAGE_TYPES",
    "MASK_ENCODINGS",
    "META_FORMAT",
    "META_PREFIX",
    "STORAGES",
    "BagIndex",
    "BagSequence",
    "BagWriteResult",
    "TopicInfo",
    "bag_dataset",
    "bag_topics",
    "decode_frame",
    "decode_mask",
    "describe_topics",
    "extract_bag",
    "is_bag",
    "open_bag",
    "stamp_text",
    "write_bag",
]
