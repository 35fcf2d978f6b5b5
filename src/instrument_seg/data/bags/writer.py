"""Writing datasets as rosbag2 bags (mcap or sqlite3) that :mod:`.reader` reads back exactly.

Frames go out as ``rgb8`` (or, with ``compressed``, as ``sensor_msgs/CompressedImage`` JPEG or PNG
on ``<image_topic>/compressed``, as image_transport records a camera) and masks as ``mono8``
(0 / 255) with identical header stamps ``start + k / rate``; sequence and frame names go to the
bag's ``custom_data``. The bag is written into a hidden sibling folder renamed at the end
(:func:`instrument_seg.fileio.atomic_directory`), so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instrument_seg.data.bags.format import (
    COMPRESSED_TYPE,
    DEFAULT_FRAME_ID,
    DEFAULT_GT_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    DEFAULT_RATE,
    DEFAULT_START,
    IMAGE_TYPE,
    META_FORMAT,
    META_PREFIX,
    STORAGES,
    typestore,
)
from instrument_seg.data.base import Dataset
from instrument_seg.errors import InputError
from instrument_seg.fileio import atomic_directory


@dataclass
class BagWriteResult:
    """What :func:`write_bag` wrote."""

    path: Path
    storage: str
    frames: int
    sequences: int
    with_gt: bool
    sizes: list[tuple[int, int]]
    image_topic: str
    gt_topic: str
    rate: float


def _check_topic_name(topic: str, role: str) -> str:
    topic = topic.strip()
    if not topic.startswith("/") or topic.endswith("/") or " " in topic or "//" in topic:
        raise InputError(
            f"{role} topic '{topic}' is not an absolute ROS topic name such as /camera/image_raw"
        )
    return topic


def _image_message(image_cls: Any, header: Any, pixels: np.ndarray, encoding: str) -> Any:
    """An uncompressed Image message of contiguous uint8 (H, W) or (H, W, C) ``pixels``."""
    h, w = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    return image_cls(
        header=header,
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=channels * w,
        data=pixels.reshape(-1),
    )


#: ``compressed`` codecs and their OpenCV file extensions.
CODECS = {"jpeg": ".jpg", "png": ".png"}


def _compressed_message(cls: Any, header: Any, rgb: np.ndarray, codec: str) -> Any:
    """A CompressedImage of an RGB frame, encoded from BGR as image_transport does."""
    import cv2

    # image_transport's compressed plugin defaults: JPEG quality 95, PNG level 3
    if codec == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buffer = cv2.imencode(CODECS[codec], np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise InputError(f"cannot encode a {rgb.shape[1]}x{rgb.shape[0]} frame as {codec}")
    return cls(header=header, format=f"rgb8; {codec} compressed bgr8", data=buffer.reshape(-1))


def write_bag(
    dataset: Dataset,
    out: str | Path,
    storage: str = "mcap",
    rate: float = DEFAULT_RATE,
    image_topic: str = DEFAULT_IMAGE_TOPIC,
    gt_topic: str = DEFAULT_GT_TOPIC,
    frame_id: str = DEFAULT_FRAME_ID,
    start: float = DEFAULT_START,
    progress: Callable[[], None] | None = None,
    compressed: str = "",
) -> BagWriteResult:
    """Writes every frame of ``dataset`` (and its ground truth, if every sequence has it).

    Frames go to ``image_topic`` as ``rgb8``, masks to ``gt_topic`` as ``mono8`` (0 / 255), both
    with header stamp and bag timestamp ``start + k / rate`` (k over all frames, sequences one
    after another) and ``frame_id``. Sequence and frame names are kept in the bag's
    ``custom_data`` so reading it back gives the same sequences.

    Args:
        dataset: what to write (any layout :func:`~instrument_seg.data.load_dataset` reads).
        out: bag directory to create (must not exist).
        storage: ``mcap`` or ``sqlite3``.
        rate: frames per second of the stamps.
        image_topic: absolute topic of the frames.
        gt_topic: absolute topic of the masks.
        frame_id: header frame_id.
        start: stamp of the first frame, seconds since the epoch.
        progress: called once per frame written.
        compressed: ``""`` (frames as ``rgb8`` Image), ``jpeg`` or ``png``: frames as
            ``CompressedImage`` on ``<image_topic>/compressed`` (JPEG is lossy: frames read
            back close to, not equal to, the originals; masks stay exact ``mono8``).

    Raises:
        InputError: bad storage, rate, topic or output path, or unreadable data; nothing is
            left at ``out``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    out = Path(out)
    if storage not in STORAGES:
        raise InputError(f"storage '{storage}' is not one of {', '.join(STORAGES)}")
    if not (math.isfinite(rate) and rate > 0):
        raise InputError(f"rate {rate} Hz must be a positive number")
    if compressed not in ("", *CODECS):
        raise InputError(f"compressed '{compressed}' is not one of {', '.join(CODECS)}")
    image_topic = _check_topic_name(image_topic, "image")
    if compressed:
        image_topic = f"{image_topic}/compressed"
    gt_topic = _check_topic_name(gt_topic, "ground-truth")
    if image_topic == gt_topic:
        raise InputError(f"image and ground-truth topic are both {image_topic}")
    if out.exists():
        raise InputError(f"output bag {out} already exists; refusing to overwrite it")
    if not out.parent.is_dir():
        raise InputError(f"cannot write bag {out}: directory {out.parent} does not exist")
    with_gt = dataset.has_masks
    store = typestore()
    types = store.types
    frame_type = COMPRESSED_TYPE if compressed else IMAGE_TYPE
    frame_cls = types[frame_type]
    image_cls, header_cls, time_cls = (
        types[IMAGE_TYPE],
        types["std_msgs/msg/Header"],
        types["builtin_interfaces/msg/Time"],
    )
    start_ns = round(start * 1e9)
    sizes: set[tuple[int, int]] = set()
    plan: list[dict[str, Any]] = []
    k = 0
    try:
        with atomic_directory(out) as tmp:
            # rosbags creates the bag folder itself, and names its storage file after it
            inner = tmp / out.name
            plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
            with Writer(inner, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
                image_conn = writer.add_connection(image_topic, frame_type, typestore=store)
                gt_conn = (
                    writer.add_connection(gt_topic, IMAGE_TYPE, typestore=store)
                    if with_gt
                    else None
                )
                for seq in dataset.sequences:
                    names = []
                    for i in range(len(seq)):
                        rgb = np.ascontiguousarray(seq.image(i), np.uint8)
                        h, w = rgb.shape[:2]
                        sizes.add((h, w))
                        t = start_ns + round(k * 1e9 / rate)
                        header = header_cls(
                            stamp=time_cls(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000),
                            frame_id=frame_id,
                        )
                        if compressed:
                            msg = _compressed_message(frame_cls, header, rgb, compressed)
                        else:
                            msg = _image_message(image_cls, header, rgb, "rgb8")
                        writer.write(image_conn, t, store.serialize_cdr(msg, frame_type))
                        if gt_conn is not None:
                            gt = seq.mask(i)
                            if gt is None or gt.shape != (h, w):
                                shape = "none" if gt is None else f"{gt.shape[1]}x{gt.shape[0]}"
                                raise InputError(
                                    f"ground truth of frame {seq.frame_name(i)} in sequence "
                                    f"'{seq.name}' is {shape} but the frame is {w}x{h}"
                                )
                            mono = np.ascontiguousarray(gt, bool).astype(np.uint8) * np.uint8(255)
                            msg = _image_message(image_cls, header, mono, "mono8")
                            writer.write(gt_conn, t, store.serialize_cdr(msg, IMAGE_TYPE))
                        names.append(seq.frame_name(i))
                        k += 1
                        if progress is not None:
                            progress()
                    plan.append({"name": seq.name, "frames": names})
                for key, value in (
                    ("format", META_FORMAT),
                    ("image_topic", image_topic),
                    ("gt_topic", gt_topic if with_gt else ""),
                    ("rate_hz", repr(float(rate))),
                    ("sequences", json.dumps(plan, separators=(",", ":"))),
                ):
                    writer.set_custom_data(f"{META_PREFIX}{key}", value)
            if k == 0:
                raise InputError(f"{dataset.root} holds no frames; nothing to write")
            for item in inner.iterdir():
                item.rename(tmp / item.name)
            inner.rmdir()
    except InputError:
        raise
    except Exception as exc:  # rosbags WriterError, OSError (disk full, permissions)
        raise InputError(f"cannot write bag {out} ({type(exc).__name__}: {exc})") from exc
    return BagWriteResult(
        out,
        storage,
        k,
        len(plan),
        with_gt,
        sorted(sizes),
        image_topic,
        gt_topic if with_gt else "",
        float(rate),
    )
