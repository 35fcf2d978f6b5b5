"""The nodes' parameters in one place: tables, validation and the validated settings.

Each node's parameters are one table (:data:`SEGMENTATION`, :data:`EVALUATION`) of
:class:`~instrument_seg.ros.param_table.Parameter` rows: name, default (its type is the ROS
parameter's type), description and what a valid value is. ``config/seg.yaml`` and
``config/eval.yaml`` list the same names with the same defaults, and the parameter tables of
docs/ros.md and docs/evaluation.md the same rows (a test keeps the four in step).
:func:`segmentation_settings` and :func:`evaluation_settings` check raw values (name -> value, as
a node or a launch file has them) and return typed settings; a bad value raises
:class:`~instrument_seg.errors.InputError`, one sentence naming the parameter and the value.

What acts on any table (:func:`declare`, :func:`checked`, :func:`unknown_parameters`, ...) is
in :mod:`instrument_seg.ros.param_table` and importable from here too.

Importing this module needs no ROS (launch files and tests use it without rclpy); only
:func:`declare`, handed a node, imports ``rcl_interfaces``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from instrument_seg.errors import InputError
from instrument_seg.ros.param_table import (
    BUILTIN_PARAMETERS,
    Parameter,
    Table,
    checked,
    declare,
    defaults,
    override_problem,
    unknown_parameters,
    unknown_warning,
    values_of,
)

__all__ = [
    "BACKENDS",
    "BUILTIN_PARAMETERS",
    "EVALUATION",
    "INPUT_QOS_CHOICES",
    "MAX_CONSECUTIVE_MISSES",
    "MAX_FRAME",
    "MAX_INPUT_SIDE",
    "MAX_PIXELS",
    "MAX_PIXELS_LIMIT",
    "MODES",
    "PACES",
    "QOS_CHOICES",
    "SEGMENTATION",
    "TRANSPORTS",
    "EvaluationSettings",
    "Parameter",
    "SegmentationSettings",
    "Table",
    "checked",
    "declare",
    "defaults",
    "evaluation_settings",
    "override_problem",
    "parse_threshold",
    "segmentation_settings",
    "unknown_parameters",
    "unknown_warning",
    "values_of",
]

#: Inference backends, as :data:`instrument_seg.inference.BACKENDS` (a test keeps them equal;
#: importing the inference package here would load OpenCV into every launch file).
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
#: input_qos: auto adapts to the publishers (reliable when all of them are, else best effort).
INPUT_QOS_CHOICES = ("auto", "reliable", "sensor_data")
QOS_CHOICES = ("reliable", "sensor_data")
TRANSPORTS = ("raw", "compressed")
MODES = ("replay", "listen")
PACES = ("lockstep", "recorded", "fixed")
#: Lockstep replay ends the run when this many frames in a row go unanswered.
MAX_CONSECUTIVE_MISSES = 3
#: The largest frame (H, W) the nodes accept by default, 4K UHD: its rgb8 frame is 23.7 MiB, its
#: rgba8 frame and its 32FC1 confidence map 31.6 MiB, what the shipped FastDDS profile carries
#: through shared memory (measured: docs/ros.md, "Frame size limit"; 4096x4096, 48 MiB, is not).
MAX_FRAME = (2160, 3840)
MAX_PIXELS = MAX_FRAME[0] * MAX_FRAME[1]
#: The largest max_pixels: 8192 x 8192.
MAX_PIXELS_LIMIT = 8192 * 8192
#: input_size: each side at most this (or [0, 0]).
MAX_INPUT_SIDE = 8192


#: segmentation_node's parameters, in config/seg.yaml's order.
SEGMENTATION: Table = (
    Parameter(
        "model_path",
        "",
        "Model to run: an ONNX file (.onnx), a TensorRT engine (.engine) or a training run "
        "directory / checkpoint (.pt). Required.",
        required="set it to a .onnx, .engine or .pt model",
    ),
    Parameter(
        "backend",
        "auto",
        "Inference backend: auto | tensorrt | onnxruntime | torch. auto: .engine -> tensorrt "
        "(or the ONNX its sidecar names, on onnxruntime, where TensorRT is unusable), .onnx -> "
        "onnxruntime, run directory or .pt -> torch.",
        choices=BACKENDS,
    ),
    Parameter(
        "input_size",
        [0, 0],
        "Network input size [H, W]; [0, 0] uses the model's own. The torch backend runs a "
        "checkpoint at any size; an ONNX file or engine has its size fixed at export, so a "
        "different value there stops the node at start-up. Frames of any size are resized to "
        "it and the outputs back to the frame's size.",
        note=f"[H, W] with H and W from 1 to {MAX_INPUT_SIDE}, or [0, 0]",
    ),
    Parameter(
        "threshold",
        "",
        "Binarisation of the confidence map: otsu (per frame), official (fixed value with small "
        "component removal), or a number in (0, 1) (fixed; string or double). Empty: the "
        "model's own setting.",
        # a word or a number: YAML "threshold: 0.5" must work as is
        dynamic_typing=True,
        note="otsu, official, a number in (0, 1), or empty",
    ),
    Parameter(
        "input_qos",
        "auto",
        "QoS of the image subscription (keep-last queue_depth): auto adapts to the matched "
        "publishers, as rosbag2 does (reliable while every publisher offers reliable, best "
        "effort as soon as one offers best effort or none is there yet; re-decided as they come "
        "and go, each change logged); sensor_data is always best effort (matches every "
        "publisher, REP-2003); reliable matches only reliable publishers.",
        choices=INPUT_QOS_CHOICES,
    ),
    Parameter(
        "output_qos",
        "reliable",
        "QoS of mask, confidence and overlay: reliable (the system default, REP-2003; every "
        "subscriber matches) or sensor_data (best effort: reliable subscribers get nothing).",
        choices=QOS_CHOICES,
    ),
    Parameter(
        "transport",
        "raw",
        "Input transport, as image_transport names it: raw subscribes image "
        "(sensor_msgs/Image), compressed subscribes image/compressed "
        "(sensor_msgs/CompressedImage, JPEG or PNG).",
        choices=TRANSPORTS,
    ),
    Parameter(
        "queue_depth",
        5,
        "DDS history depth (keep-last) of the image subscription and the outputs. The executor "
        "hands every taken frame to a one-slot mailbox, so a deeper queue adds no latency; "
        "frames the worker skips are counted as dropped, frames lost before the node saw them "
        "as lost (docs/ros.md). 1 to 1000.",
        minimum=1,
        maximum=1000,
    ),
    Parameter(
        "max_pixels",
        MAX_PIXELS,
        "Largest accepted width x height; bigger frames are rejected before any conversion. "
        "The default is what the shipped FastDDS profile delivers (docs/ros.md).",
        minimum=1,
        maximum=MAX_PIXELS_LIMIT,
    ),
    Parameter(
        "publish_overlay",
        True,
        "Offer the overlay topic (rgb8 mask-on-frame); drawn only while something subscribes.",
    ),
    Parameter(
        "threads",
        0,
        "CPU threads of the backend: onnxruntime's intra-op threads, or torch.set_num_threads "
        "(process-wide); 0 keeps the backend's default (one per core). Set 1 on a shared or "
        "oversubscribed CPU, where several threads per inference run slower than one. 0 to "
        "256.",
        minimum=0,
        maximum=256,
        minimum_note=" (default)",
    ),
    Parameter(
        "diagnostics_period",
        1.0,
        "Seconds between /diagnostics messages, 0.1 to 3600.",
        minimum=0.1,
        maximum=3600.0,
        unit="s",
    ),
    Parameter(
        "autostart",
        True,
        "Configure and activate the lifecycle node at start-up (as a plain node); false: wait "
        "for change_state (configure loads the model, activate creates the topics).",
    ),
    Parameter(
        "warning_period",
        5.0,
        "Seconds between two warnings about the same kind of rejected frame (rate limit), "
        "0.01 to 3600.",
        minimum=0.01,
        maximum=3600.0,
        unit="s",
    ),
)

#: evaluation_node's parameters, in config/eval.yaml's order. Its doubles take integers too
#: (rate:=15 from launch or YAML must work as well as rate:=15.0).
EVALUATION: Table = (
    Parameter(
        "mode",
        "replay",
        "replay: publish the frames of bag_path on image and score the masks; listen: score "
        "masks against ground truth published by an external ros2 bag play.",
        choices=MODES,
    ),
    Parameter(
        "bag_path", "", "rosbag2 directory (or .mcap / .db3 file) to replay. Required in replay."
    ),
    Parameter(
        "bag_image_topic",
        "",
        "Replay: the bag topic holding the frames; empty: the topic instrument-seg bag wrote, "
        "else /camera/image_raw, else the bag's only image topic.",
    ),
    Parameter(
        "bag_gt_topic",
        "",
        "Replay: the bag topic holding the ground-truth masks; empty: the topic "
        "instrument-seg bag wrote, else /camera/gt_mask.",
    ),
    Parameter(
        "pace",
        "lockstep",
        "Replay pacing: lockstep (next frame once the previous mask arrived; exact accuracy), "
        "recorded (the bag's timing) or fixed (rate Hz).",
        choices=PACES,
    ),
    Parameter(
        "rate",
        10.0,
        "Frames per second for pace fixed, 0.01 to 1000.",
        minimum=0.01,
        maximum=1000.0,
        unit="Hz",
        dynamic_typing=True,
    ),
    Parameter(
        "max_frames",
        0,
        "Replay only the first N frames of the bag; 0: all of them.",
        minimum=0,
        maximum=10**9,
        minimum_note=" (all)",
    ),
    Parameter(
        "output_dir",
        "evaluation",
        "Directory for report.json, report.md, iou_over_time.png and latency_histogram.png "
        "(created; existing report files are replaced).",
        required="name a directory for the report",
    ),
    Parameter(
        "startup_timeout",
        30.0,
        "Seconds to wait for a segmentation node (a subscriber on image and a publisher on "
        "mask in replay; the first ground truth in listen) before giving up; 0.1 to 86400.",
        minimum=0.1,
        maximum=86400.0,
        unit="s",
        dynamic_typing=True,
    ),
    Parameter(
        "mask_timeout",
        10.0,
        "Seconds after a frame is published (replay) or its ground truth received (listen) "
        "after which its mask counts as missed. Lockstep ends the run when the first frame, or "
        f"{MAX_CONSECUTIVE_MISSES} frames in a row, go unanswered that long; any mode ends it "
        "when no frame was answered at all. 0.1 to 3600.",
        minimum=0.1,
        maximum=3600.0,
        unit="s",
        dynamic_typing=True,
    ),
    Parameter(
        "idle_timeout",
        5.0,
        "Listen: end the run this many seconds after the last ground truth arrived; 0.1 to "
        "3600.",
        minimum=0.1,
        maximum=3600.0,
        unit="s",
        dynamic_typing=True,
    ),
    Parameter(
        "input_qos",
        "auto",
        "QoS of the mask, ground_truth and (listen) image subscriptions: auto (reliable while "
        "every matched publisher offers reliable, else best effort, re-decided as publishers "
        "come and go), sensor_data (best effort; matches every publisher, REP-2003) or "
        "reliable.",
        choices=INPUT_QOS_CHOICES,
    ),
    Parameter(
        "output_qos",
        "reliable",
        "QoS of the replayed image publisher: reliable (the system default, REP-2003) or "
        "sensor_data (best effort).",
        choices=QOS_CHOICES,
    ),
    Parameter(
        "queue_depth",
        5,
        "DDS keep-last depth of the image publisher and ground-truth subscriber, 1 to 1000.",
        minimum=1,
        maximum=1000,
    ),
)


@dataclass(frozen=True)
class SegmentationSettings:
    """segmentation_node's validated parameter values."""

    model_path: str
    backend: str
    input_size: tuple[int, int] | None
    threshold: str | float | None
    input_qos: str
    output_qos: str
    transport: str
    queue_depth: int
    max_pixels: int
    publish_overlay: bool
    threads: int
    diagnostics_period: float
    autostart: bool
    warning_period: float


@dataclass(frozen=True)
class EvaluationSettings:
    """evaluation_node's validated parameter values."""

    mode: str
    bag_path: str
    bag_image_topic: str | None
    bag_gt_topic: str | None
    pace: str
    rate: float
    max_frames: int
    output_dir: str
    startup_timeout: float
    mask_timeout: float
    idle_timeout: float
    input_qos: str
    output_qos: str
    queue_depth: int


def parse_threshold(text: str) -> str | float | None:
    """``""`` -> None (model default), ``otsu``/``official`` as is, else a float in (0, 1).

    Raises:
        InputError: anything else.
    """
    text = text.strip()
    if text in ("", "otsu", "official"):
        return text or None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise InputError(
            f"parameter threshold is '{text}'; use otsu, official or a number in (0, 1)"
        )
    return value


def segmentation_settings(values: dict[str, Any]) -> SegmentationSettings:
    """Checks segmentation_node's raw parameter values (name -> value).

    Raises:
        InputError: one sentence naming the parameter and its bad value.
    """
    v = checked(SEGMENTATION, values)
    size = v["input_size"]
    if len(size) != 2 or (size != [0, 0] and not all(0 < x <= MAX_INPUT_SIDE for x in size)):
        raise InputError(
            f"parameter input_size is {size}; use [H, W] with H and W from 1 to "
            f"{MAX_INPUT_SIDE}, or [0, 0] for the model's own size"
        )
    return SegmentationSettings(
        **{
            **v,
            "input_size": None if size == [0, 0] else (size[0], size[1]),
            "threshold": parse_threshold(v["threshold"]),
        }
    )


def evaluation_settings(values: dict[str, Any]) -> EvaluationSettings:
    """Checks evaluation_node's raw parameter values (name -> value).

    Raises:
        InputError: one sentence naming the parameter and its bad value.
    """
    v = checked(EVALUATION, values)
    if v["mode"] == "replay" and not v["bag_path"]:
        raise InputError("parameter bag_path is empty; replay mode needs a rosbag2 bag")
    return EvaluationSettings(
        **{
            **v,
            "bag_image_topic": v["bag_image_topic"] or None,
            "bag_gt_topic": v["bag_gt_topic"] or None,
        }
    )
