"""The nodes' parameters in one place: tables, validation and the validated settings.

Each node's parameters are one table (:data:`SEGMENTATION`, :data:`EVALUATION`) of
:class:`Parameter` rows: name, default (its type is the ROS parameter's type), description and
what a valid value is. ``config/seg.yaml`` and ``config/eval.yaml`` list the same names with the
same defaults, and the parameter tables of docs/ros.md and docs/evaluation.md the same rows (a
test keeps the four in step). :func:`segmentation_settings` and :func:`evaluation_settings`
check raw values (name -> value, as a node or a launch file has them) and return typed
settings; a bad value raises :class:`~instrument_seg.errors.InputError`, one sentence naming
the parameter and the value.

Importing this module needs no ROS (launch files and tests use it without rclpy); only
:func:`declare`, handed a node, imports ``rcl_interfaces``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from instrument_seg.errors import InputError

#: Inference backends, as :data:`instrument_seg.inference.BACKENDS` (a test keeps them equal;
#: importing the inference package here would load OpenCV into every launch file).
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
QOS_CHOICES = ("reliable", "sensor_data")
TRANSPORTS = ("raw", "compressed")
MODES = ("replay", "listen")
PACES = ("lockstep", "recorded", "fixed")
#: Lockstep replay ends the run when this many frames in a row go unanswered.
MAX_CONSECUTIVE_MISSES = 3


@dataclass(frozen=True)
class Parameter:
    """One read-only node parameter.

    Attributes:
        name: the ROS parameter name.
        default: its default; its type is the parameter's ROS type (float: double).
        description: what ``ros2 param describe`` shows.
        choices: the valid values of a string parameter (empty: any).
        required: for a string: the hint of the error an empty value raises (empty: allowed).
        minimum: for an integer: the smallest valid value (None: any).
        minimum_note: what the minimum means, in the error sentence (e.g. ``" (all)"``).
        positive: for a float: it must be finite and > 0.
        dynamic_typing: it also accepts values of another type (an integer or a numeric string
            for a double; a number for the threshold word).
    """

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    required: str = ""
    minimum: int | None = None
    minimum_note: str = ""
    positive: bool = False
    dynamic_typing: bool = False

    def constraints(self) -> str:
        """The valid values in words, for the descriptor's ``additional_constraints``."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.minimum is not None:
            return f">= {self.minimum}"
        if self.positive:
            return "> 0"
        if self.required:
            return "not empty"
        return ""


Table = tuple[Parameter, ...]

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
    ),
    Parameter(
        "threshold",
        "",
        "Binarisation of the confidence map: otsu (per frame), official (fixed value with small "
        "component removal), or a number in (0, 1) (fixed; string or double). Empty: the "
        "model's own setting.",
        # a word or a number: YAML "threshold: 0.5" must work as is
        dynamic_typing=True,
    ),
    Parameter(
        "input_qos",
        "sensor_data",
        "QoS of the image subscription: sensor_data (best effort, keep-last queue_depth; matches "
        "every publisher, REP-2003) or reliable (matches only reliable publishers).",
        choices=QOS_CHOICES,
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
        "as lost (docs/ros.md).",
        minimum=1,
    ),
    Parameter(
        "max_pixels",
        4096 * 4096,
        "Largest accepted width x height; bigger frames are rejected before any conversion.",
        minimum=1,
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
        "oversubscribed CPU, where several threads per inference run slower than one.",
        minimum=0,
        minimum_note=" (default)",
    ),
    Parameter(
        "diagnostics_period", 1.0, "Seconds between /diagnostics messages.", positive=True
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
        "Seconds between two warnings about the same kind of rejected frame (rate limit).",
        positive=True,
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
    Parameter("rate", 10.0, "Frames per second for pace fixed.", dynamic_typing=True),
    Parameter(
        "max_frames",
        0,
        "Replay only the first N frames of the bag; 0: all of them.",
        minimum=0,
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
        "mask in replay; the first ground truth in listen) before giving up.",
        positive=True,
        dynamic_typing=True,
    ),
    Parameter(
        "mask_timeout",
        10.0,
        "Seconds after a frame is published (replay) or its ground truth received (listen) "
        "after which its mask counts as missed. Lockstep ends the run when the first frame, or "
        f"{MAX_CONSECUTIVE_MISSES} frames in a row, go unanswered that long; any mode ends it "
        "when no frame was answered at all.",
        positive=True,
        dynamic_typing=True,
    ),
    Parameter(
        "idle_timeout",
        5.0,
        "Listen: end the run this many seconds after the last ground truth arrived.",
        positive=True,
        dynamic_typing=True,
    ),
    Parameter(
        "input_qos",
        "sensor_data",
        "QoS of the mask, ground_truth and (listen) image subscriptions: sensor_data (best "
        "effort; matches every publisher, REP-2003) or reliable.",
        choices=QOS_CHOICES,
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
        "DDS keep-last depth of the image publisher and ground-truth subscriber.",
        minimum=1,
    ),
)


def defaults(table: Table) -> dict[str, Any]:
    """name -> default, in the table's order (what the YAML file lists)."""
    return {p.name: p.default for p in table}


def checked(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Checks every value against its row and converts it to the default's type.

    Strings without choices come back stripped, floats as ``float`` (numeric strings from a
    launch file included), integers as ``int``; other values as they are.

    Raises:
        InputError: one sentence naming the parameter and its bad value.
    """
    out: dict[str, Any] = {}
    for p in table:
        value = values[p.name]
        if p.choices:
            if value not in p.choices:
                raise InputError(
                    f"parameter {p.name} is '{value}'; use one of {', '.join(p.choices)}"
                )
        elif isinstance(p.default, bool):
            value = bool(value)
        elif isinstance(p.default, int):
            value = int(value)
            if p.minimum is not None and value < p.minimum:
                raise InputError(
                    f"parameter {p.name} is {values[p.name]}; "
                    f"use {p.minimum}{p.minimum_note} or more"
                )
        elif isinstance(p.default, float):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"parameter {p.name} is '{values[p.name]}'; it must be a number"
                ) from None
            if p.positive and not (math.isfinite(value) and value > 0):
                raise InputError(f"parameter {p.name} is {values[p.name]}; it must be positive")
        elif isinstance(p.default, str):
            value = str(value).strip()
            if p.required and not value:
                raise InputError(f"parameter {p.name} is empty; {p.required}")
        out[p.name] = value
    return out


def declare(node: Any, table: Table) -> None:
    """Declares every parameter of ``table`` on an rclpy ``node``: read-only, with its
    description (and its valid values as ``additional_constraints``).

    Raises:
        rclpy.exceptions.ParameterException: a value of the wrong type (e.g. from a YAML
            file), as ``Node.declare_parameter`` does.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    for p in table:
        descriptor = ParameterDescriptor(
            description=p.description,
            additional_constraints=p.constraints(),
            read_only=True,
            dynamic_typing=p.dynamic_typing,
        )
        node.declare_parameter(p.name, p.default, descriptor)


def values_of(node: Any, table: Table) -> dict[str, Any]:
    """The current values (name -> value) of the parameters ``table`` declared on ``node``."""
    return {p.name: node.get_parameter(p.name).value for p in table}


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
    size = [int(x) for x in v["input_size"]]
    if len(size) != 2 or min(size) < 0 or (0 in size and size != [0, 0]):
        raise InputError(f"parameter input_size is {size}; use [H, W] or [0, 0]")
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
    if v["pace"] == "fixed" and not (math.isfinite(v["rate"]) and v["rate"] > 0):
        raise InputError(f"parameter rate is {values['rate']}; pace fixed needs a rate > 0 Hz")
    return EvaluationSettings(
        **{
            **v,
            "bag_image_topic": v["bag_image_topic"] or None,
            "bag_gt_topic": v["bag_gt_topic"] or None,
        }
    )
