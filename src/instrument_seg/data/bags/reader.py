"""Reading rosbag2 bags as sequences of frames with optional ground truth (see
:mod:`instrument_seg.data.bags` for how topics and sequences are chosen).

:class:`BagIndex` scans the chosen topics once (headers only); pixels are read on demand, by
sequential reads that stream and seek where needed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from instrument_seg.data.bags.decoding import decode_frame, decode_mask
from instrument_seg.data.bags.format import (
    BAG_FILE_SUFFIXES,
    COMPRESSED_TYPE,
    DEFAULT_GT_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    FRAME_ENCODINGS,
    IMAGE_TYPES,
    MASK_ENCODINGS,
    META_PREFIX,
    stamp_text,
    typestore,
)
from instrument_seg.data.base import Dataset, Sequence
from instrument_seg.errors import InputError
from instrument_seg.imagemsg import safe_name, safe_text


def _error_text(exc: Exception) -> str:
    """An exception from reading a bag, its text escaped (it may quote the bag's bytes)."""
    return f"{type(exc).__name__}: {safe_text(str(exc), 200)}"


def is_bag(path: Path) -> bool:
    """A rosbag2 directory (with ``metadata.yaml``) or a bare ``.mcap`` / ``.db3`` file."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.is_file() and path.suffix.lower() in BAG_FILE_SUFFIXES


def _bag_metadata(path: Path) -> dict[str, str]:
    """The bag's ``custom_data`` (empty for bare files and bags without it)."""
    if not path.is_dir():
        return {}
    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())
        custom = info["rosbag2_bagfile_information"].get("custom_data") or {}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"cannot read bag {path}: metadata.yaml is unreadable ({exc})") from exc
    return {str(k): str(v) for k, v in custom.items()} if isinstance(custom, dict) else {}


def _open_reader(path: Path):
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise InputError(f"bag {path} does not exist")
    if not is_bag(path):
        raise InputError(
            f"{path} is not a rosbag2 bag (expected a directory with metadata.yaml, or a "
            ".mcap / .db3 file)"
        )
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises ReaderError, FileNotFoundError, KeyError...
        raise InputError(f"cannot read bag {path} ({_error_text(exc)})") from exc
    return reader


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: message type and number of messages."""

    name: str
    msgtype: str
    count: int


def bag_topics(path: str | Path) -> list[TopicInfo]:
    """The topics of a bag, by name.

    Raises:
        InputError: the path is missing or not a readable bag.
    """
    reader = _open_reader(Path(path))
    try:
        return _topics(reader)
    finally:
        reader.close()


def _topics(reader) -> list[TopicInfo]:
    counts: Counter[str] = Counter()
    types: dict[str, str] = {}
    for conn in reader.connections:
        counts[conn.topic] += conn.msgcount
        types[conn.topic] = conn.msgtype
    return [TopicInfo(name, types[name], counts[name]) for name in sorted(types)]


def describe_topics(topics: list[TopicInfo]) -> str:
    """``/a (sensor_msgs/msg/Image, 24 messages), /b (...)`` or ``no topics``."""
    if not topics:
        return "no topics"
    return ", ".join(
        f"{safe_name(t.name)} ({safe_name(t.msgtype)}, {t.count} messages)" for t in topics
    )


# --------------------------------------------------------------------------------------------
# Index of a bag: one pass over the chosen topics, then sequential reads with seeking
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """Where one message is (log time, rank among equal log times) and its header."""

    log_time: int
    rank: int
    sec: int
    nanosec: int
    frame_id: str
    height: int
    width: int

    @property
    def stamp(self) -> int:
        return self.sec * 1_000_000_000 + self.nanosec


def _size(record: _Record, msgtype: str) -> tuple[int, int] | None:
    return None if msgtype == COMPRESSED_TYPE else (record.height, record.width)


class _Cursor:
    """Reads one topic's messages by index: sequential reads stream, others seek."""

    def __init__(self, path: Path, topic: str, records: list[_Record]) -> None:
        self.path, self.topic, self.records = path, topic, records
        self._reader = None
        self._stream: Iterator | None = None
        self._next = -1

    def raw(self, k: int) -> bytes:
        record = self.records[k]
        if self._stream is None or k != self._next:
            if self._reader is None:
                self._reader = _open_reader(self.path)
            conns = [c for c in self._reader.connections if c.topic == self.topic]
            self._stream = self._reader.messages(conns, start=record.log_time)
            for _ in range(record.rank):
                next(self._stream, None)
        item = next(self._stream, None)
        if item is None or item[1] != record.log_time:
            self._stream = None
            raise InputError(
                f"bag {self.path} changed while reading message {k} of topic "
                f"{safe_name(self.topic)}"
            )
        self._next = k + 1
        return item[2]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader, self._stream = None, None


class BagIndex:
    """The frames (and ground truth) of one bag: headers indexed, pixels read on demand.

    Args:
        path: bag directory or ``.mcap`` / ``.db3`` file.
        image_topic: topic of the frames (None: see :mod:`instrument_seg.data.bags`).
        gt_topic: topic of the ground truth (None: see :mod:`instrument_seg.data.bags`;
            ``""``: none).

    Raises:
        InputError: missing or unreadable bag, absent topic (the message lists the topics
            present), no frames, ground truth missing or of another size for a frame,
            duplicated stamps, unsupported encodings.
    """

    def __init__(
        self, path: str | Path, image_topic: str | None = None, gt_topic: str | None = None
    ) -> None:
        self.path = Path(path)
        reader = _open_reader(self.path)
        try:
            self.custom = _bag_metadata(self.path)
            self.topics = _topics(reader)
            if not any(t.count for t in self.topics):
                raise InputError(f"bag {self.path} is empty (no messages)")
            self.image_topic, self.gt_topic = self._choose_topics(image_topic, gt_topic)
            types = {t.name: t.msgtype for t in self.topics}
            self.image_type = types[self.image_topic]
            self.gt_type = types.get(self.gt_topic) if self.gt_topic else None
            self.frames, self.truths = self._scan(reader)
        finally:
            reader.close()
        self._check()
        self._frame_cursor = _Cursor(self.path, self.image_topic, self.frames)
        self._gt_cursor = _Cursor(self.path, self.gt_topic, self.truths) if self.gt_topic else None
        self._gt_of = self._pair() if self.gt_topic else None
        self._store = typestore()

    # --- set-up ----------------------------------------------------------------------------

    def _topic_error(self, topic: str, role: str) -> InputError:
        return InputError(
            f"{role} topic {safe_name(topic)} is not in bag {self.path}; it holds "
            f"{describe_topics(self.topics)}"
        )

    def _choose_topics(self, image_topic: str | None, gt_topic: str | None) -> tuple[str, str]:
        by_name = {t.name: t for t in self.topics}
        image_topics = [t.name for t in self.topics if t.msgtype in IMAGE_TYPES]
        if image_topic is None:
            image_topic = self.custom.get(f"{META_PREFIX}image_topic")
        if image_topic is None:
            if DEFAULT_IMAGE_TOPIC in by_name:
                image_topic = DEFAULT_IMAGE_TOPIC
            elif len([t for t in image_topics if t != DEFAULT_GT_TOPIC]) == 1:
                image_topic = next(t for t in image_topics if t != DEFAULT_GT_TOPIC)
            else:
                raise InputError(
                    f"bag {self.path} has {len(image_topics)} image topics and none is "
                    f"{DEFAULT_IMAGE_TOPIC}; name the frames' topic (--image-topic) among "
                    f"{describe_topics(self.topics)}"
                )
        if gt_topic is None:
            gt_topic = self.custom.get(f"{META_PREFIX}gt_topic")
            if gt_topic is None:
                gt_topic = DEFAULT_GT_TOPIC if DEFAULT_GT_TOPIC in by_name else ""
        for topic, role in ((image_topic, "image"), (gt_topic, "ground-truth")):
            if not topic:
                continue
            if topic not in by_name:
                raise self._topic_error(topic, role)
            if by_name[topic].msgtype not in IMAGE_TYPES:
                raise InputError(
                    f"{role} topic {safe_name(topic)} in bag {self.path} carries "
                    f"{safe_name(by_name[topic].msgtype)}, not {' or '.join(IMAGE_TYPES)}"
                )
            if by_name[topic].count == 0:
                raise InputError(
                    f"{role} topic {safe_name(topic)} in bag {self.path} holds no messages"
                )
        if gt_topic == image_topic:
            raise InputError(f"image and ground-truth topic are both {safe_name(image_topic)}")
        return image_topic, gt_topic

    def _scan(self, reader) -> tuple[list[_Record], list[_Record]]:
        store = typestore()
        wanted = {self.image_topic, self.gt_topic} - {""}
        conns = [c for c in reader.connections if c.topic in wanted]
        out: dict[str, list[_Record]] = {topic: [] for topic in wanted}
        last: dict[str, tuple[int, int]] = {}
        try:
            for conn, log_time, raw in reader.messages(conns):
                msg = store.deserialize_cdr(raw, conn.msgtype)
                prev_time, prev_rank = last.get(conn.topic, (None, -1))
                rank = prev_rank + 1 if prev_time == log_time else 0
                last[conn.topic] = (log_time, rank)
                compressed = conn.msgtype == COMPRESSED_TYPE
                stamp = msg.header.stamp
                out[conn.topic].append(
                    _Record(
                        log_time,
                        rank,
                        int(stamp.sec),
                        int(stamp.nanosec),
                        str(msg.header.frame_id),
                        0 if compressed else int(msg.height),
                        0 if compressed else int(msg.width),
                    )
                )
                if not compressed:
                    frames = conn.topic == self.image_topic
                    encodings = FRAME_ENCODINGS if frames else MASK_ENCODINGS
                    if msg.encoding not in encodings:
                        stamp = stamp_text(out[conn.topic][-1].stamp)
                        raise InputError(
                            f"topic {safe_name(conn.topic)} in bag {self.path} has encoding "
                            f"{safe_text(msg.encoding)} at stamp {stamp} "
                            f"(supported: {', '.join(encodings)})"
                        )
        except InputError:
            raise
        except Exception as exc:  # truncated storage, undecodable message
            raise InputError(f"cannot read bag {self.path} ({_error_text(exc)})") from exc
        return out[self.image_topic], out.get(self.gt_topic, [])

    def _check(self) -> None:
        if not self.gt_topic:
            return
        for topic, records in ((self.image_topic, self.frames), (self.gt_topic, self.truths)):
            counts = Counter(r.stamp for r in records)
            stamp, n = counts.most_common(1)[0]
            if n > 1:
                raise InputError(
                    f"topic {safe_name(topic)} in bag {self.path} has {n} messages with stamp "
                    f"{stamp_text(stamp)}; frames are paired with ground truth by stamp"
                )

    def _pair(self) -> list[int]:
        by_stamp = {r.stamp: k for k, r in enumerate(self.truths)}
        pairs = []
        for frame in self.frames:
            k = by_stamp.get(frame.stamp)
            if k is None:
                raise InputError(
                    f"frame at stamp {stamp_text(frame.stamp)} on {safe_name(self.image_topic)} "
                    f"has no ground truth on {safe_name(self.gt_topic)} in bag {self.path}"
                )
            a = _size(frame, self.image_type)
            b = _size(self.truths[k], self.gt_type)
            if a is not None and b is not None and a != b:
                raise InputError(
                    f"ground truth at stamp {stamp_text(frame.stamp)} on "
                    f"{safe_name(self.gt_topic)} is {b[1]}x{b[0]} but its frame on "
                    f"{safe_name(self.image_topic)} is {a[1]}x{a[0]} "
                    f"(bag {self.path})"
                )
            pairs.append(k)
        return pairs

    # --- access ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def has_masks(self) -> bool:
        return self._gt_of is not None

    def where(self, k: int) -> str:
        return (
            f"frame at stamp {stamp_text(self.frames[k].stamp)} on {safe_name(self.image_topic)}"
        )

    def image(self, k: int) -> np.ndarray:
        """Frame ``k`` (recording order) as uint8 RGB (H, W, 3)."""
        raw = self._frame_cursor.raw(k)
        msg = self._store.deserialize_cdr(raw, self.image_type)
        return decode_frame(msg, self.image_type, f"{self.where(k)} in bag {self.path}")

    def mask(self, k: int) -> np.ndarray | None:
        """Ground truth of frame ``k`` as bool (H, W), or None without a ground-truth topic."""
        if self._gt_of is None or self._gt_cursor is None:
            return None
        j = self._gt_of[k]
        where = (
            f"ground truth at stamp {stamp_text(self.truths[j].stamp)} on "
            f"{safe_name(self.gt_topic)}"
        )
        msg = self._store.deserialize_cdr(self._gt_cursor.raw(j), self.gt_type)
        mask = decode_mask(msg, self.gt_type, f"{where} in bag {self.path}")
        if self.gt_type == COMPRESSED_TYPE or self.image_type == COMPRESSED_TYPE:
            # sizes of compressed messages are known only once decoded
            frame = self.image(k)
            if mask.shape != frame.shape[:2]:
                raise InputError(
                    f"{where} is {mask.shape[1]}x{mask.shape[0]} but its frame on "
                    f"{safe_name(self.image_topic)} is {frame.shape[1]}x{frame.shape[0]} "
                    f"(bag {self.path})"
                )
        return mask

    def close(self) -> None:
        """Closes the open storage files (reopened on the next read)."""
        self._frame_cursor.close()
        if self._gt_cursor is not None:
            self._gt_cursor.close()

    def sequence_plan(self) -> list[tuple[str, list[str]]]:
        """(sequence name, frame names) in recording order, covering every frame once."""
        text = self.custom.get(f"{META_PREFIX}sequences")
        if text is None:
            name = self.path.stem if self.path.is_file() else self.path.name
            return [(name, [f"frame{k:06d}" for k in range(len(self))])]
        try:
            plan = [(str(s["name"]), [str(f) for f in s["frames"]]) for s in json.loads(text)]
        except (ValueError, TypeError, KeyError) as exc:
            raise InputError(
                f"bag {self.path} has unreadable {META_PREFIX}sequences metadata "
                f"({safe_text(str(exc), 200)})"
            ) from exc
        for name in [n for seq, frames in plan for n in (seq, *frames)]:
            bad = not name or name in (".", "..") or "/" in name or "\\" in name
            if bad or not name.isprintable():
                raise InputError(
                    f"bag {self.path}'s metadata names a sequence or frame {safe_text(name)}, "
                    "which is not a file name"
                )
        listed = sum(len(frames) for _, frames in plan)
        if listed != len(self):
            raise InputError(
                f"bag {self.path}'s metadata lists {listed} frames but topic "
                f"{safe_name(self.image_topic)} holds {len(self)} (was the bag cut or filtered?)"
            )
        return plan


class BagSequence(Sequence):
    """A run of consecutive frames of a bag (the whole bag, or one sequence written into it).

    Beyond :class:`~instrument_seg.data.base.Sequence`: :meth:`stamp`, :meth:`frame_id` and
    :meth:`log_time` of each frame, for replaying it with its recorded headers and timing.
    """

    def __init__(self, index: BagIndex, name: str, first: int, names: list[str]) -> None:
        self.index = index
        self.name = name
        self.first = first
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def frame_name(self, index: int) -> str:
        return self.names[index]

    def _k(self, index: int) -> int:
        if not 0 <= index < len(self.names):
            raise IndexError(
                f"frame {index} of sequence {safe_text(self.name)} ({len(self)} frames)"
            )
        return self.first + index

    def image(self, index: int) -> np.ndarray:
        return self.index.image(self._k(index))

    @property
    def has_masks(self) -> bool:
        return self.index.has_masks

    def mask(self, index: int) -> np.ndarray | None:
        return self.index.mask(self._k(index))

    def stamp(self, index: int) -> tuple[int, int]:
        """Header stamp of frame ``index`` as (sec, nanosec)."""
        r = self.index.frames[self._k(index)]
        return r.sec, r.nanosec

    def frame_id(self, index: int) -> str:
        """Header frame_id of frame ``index``."""
        return self.index.frames[self._k(index)].frame_id

    def log_time(self, index: int) -> int:
        """When frame ``index`` was recorded (bag timestamp, ns)."""
        return self.index.frames[self._k(index)].log_time


def open_bag(
    path: str | Path, image_topic: str | None = None, gt_topic: str | None = None
) -> list[BagSequence]:
    """The sequences of a bag (see :mod:`instrument_seg.data.bags` for how topics are chosen).

    Raises:
        InputError: see :class:`BagIndex`.
    """
    index = BagIndex(path, image_topic, gt_topic)
    sequences, first = [], 0
    for name, names in index.sequence_plan():
        if names:
            sequences.append(BagSequence(index, name, first, names))
        first += len(names)
    return sequences


def bag_dataset(
    path: str | Path, image_topic: str | None = None, gt_topic: str | None = None
) -> Dataset:
    """A bag as a :class:`~instrument_seg.data.base.Dataset` (layout ``rosbag2``)."""
    return Dataset(str(path), open_bag(path, image_topic, gt_topic), "rosbag2")
