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

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from instrument_seg.errors import InputError

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
#: Parameters every rclpy node declares itself (not unknown when given).
BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides")
#: The largest frame (H, W) the nodes accept by default, 4K UHD: its rgb8 frame is 23.7 MiB, its
#: rgba8 frame and its 32FC1 confidence map 31.6 MiB, what the shipped FastDDS profile carries
#: through shared memory (measured: docs/ros.md, "Frame size limit"; 4096x4096, 48 MiB, is not).
MAX_FRAME = (2160, 3840)
MAX_PIXELS = MAX_FRAME[0] * MAX_FRAME[1]
#: The largest max_pixels: 8192 x 8192.
MAX_PIXELS_LIMIT = 8192 * 8192
#: input_size: each side at most this (or [0, 0]).
MAX_INPUT_SIDE = 8192


@dataclass(frozen=True)
class Parameter:
    """One read-only node parameter.

    Attributes:
        name: the ROS parameter name.
        default: its default; its type is the parameter's ROS type (float: double).
        description: what ``ros2 param describe`` shows.
        choices: the valid values of a string parameter (empty: any).
        required: for a string: the hint of the error an empty value raises (empty: allowed).
        minimum: for a number: the smallest valid value, inclusive (None: no bound).
        maximum: for a number: the largest valid value, inclusive (None: no bound).
        minimum_note: what the minimum means, in the error sentence (e.g. ``" (all)"``).
        unit: the unit of a number, for the error sentence and the constraints (e.g. ``"s"``).
        note: the valid values in words where no choices or range say them.
        dynamic_typing: it also accepts values of another type (an integer or a numeric string
            for a double; a number for the threshold word).
    """

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    required: str = ""
    minimum: float | None = None
    maximum: float | None = None
    minimum_note: str = ""
    unit: str = ""
    note: str = ""
    dynamic_typing: bool = False

    def range_text(self) -> str:
        """The valid range in words (``"1 to 1000"``, ``"0 (default) to 256"``); "" if none."""
        if self.minimum is None and self.maximum is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        low, high = _num_text(self.minimum), _num_text(self.maximum)
        if self.maximum is None:
            return f"{low}{self.minimum_note} or more{unit}"
        if self.minimum is None:
            return f"at most {high}{unit}"
        return f"{low}{self.minimum_note} to {high}{unit}"

    def constraints(self) -> str:
        """The valid values in words, for the descriptor's ``additional_constraints``."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.range_text():
            return f"from {self.range_text()}"
        if self.note:
            return self.note
        if self.required:
            return "not empty"
        return ""

    def check(self, value: Any) -> Any:
        """Checks one raw value and converts it to the default's type.

        Strings without choices come back stripped, floats as ``float`` (numeric strings from a
        launch file included), integers as ``int``, lists as lists of ``int``; others as they
        are.

        Raises:
            InputError: one sentence naming the parameter and the bad value.
        """
        if self.choices:
            if value not in self.choices:
                raise InputError(
                    f"parameter {self.name} is '{value}'; use one of {', '.join(self.choices)}"
                )
            return value
        if isinstance(self.default, bool):
            if not isinstance(value, bool):
                raise InputError(
                    f"parameter {self.name} is {_quoted(value)}; it must be true or false"
                )
            return value
        if isinstance(self.default, (int, float)):
            number = _number(value, integer=isinstance(self.default, int))
            if number is None:
                kind = "an integer" if isinstance(self.default, int) else "a number"
                raise InputError(f"parameter {self.name} is {_quoted(value)}; it must be {kind}")
            low = -math.inf if self.minimum is None else self.minimum
            high = math.inf if self.maximum is None else self.maximum
            if not (math.isfinite(number) and low <= number <= high):
                raise InputError(f"parameter {self.name} is {value}; use {self.range_text()}")
            return number
        if isinstance(self.default, list):
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise InputError(
                    f"parameter {self.name} is {_quoted(value)}; it must be a list of integers"
                )
            return [int(v) for v in value]
        if isinstance(self.default, str):
            if not isinstance(value, str) and not self.dynamic_typing:
                raise InputError(f"parameter {self.name} is {_quoted(value)}; it must be a string")
            text = str(value).strip()
            if self.required and not text:
                raise InputError(f"parameter {self.name} is empty; {self.required}")
            return text
        return value


def _num_text(value: float | None) -> str:
    """A bound in words: integers in full, floats as ``%g``."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _quoted(value: Any) -> str:
    """A raw value for an error sentence: strings quoted, ``None`` as "not set"."""
    if value is None:
        return "not set (an empty list or a value without a type)"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


def _number(value: Any, integer: bool) -> float | int | None:
    """``value`` as an int (``integer``) or a float; a float also from an int or a numeric
    string; None when it is not one."""
    if isinstance(value, bool):
        return None
    if integer:
        return value if isinstance(value, int) else None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


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


def defaults(table: Table) -> dict[str, Any]:
    """name -> default, in the table's order (what the YAML file lists)."""
    return {p.name: p.default for p in table}


def checked(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Checks every value against its row (:meth:`Parameter.check`) and converts it to the
    default's type.

    Raises:
        InputError: one sentence naming the parameter and its bad value.
    """
    return {p.name: p.check(values[p.name]) for p in table}


def unknown_parameters(names: Iterable[str], table: Table) -> list[str]:
    """The names in ``names`` (parameters given to a node) that ``table`` does not declare,
    sorted; rclpy's own parameters (``use_sim_time``, ...) are not unknown."""
    known = {p.name for p in table} | set(BUILTIN_PARAMETERS)
    return sorted(n for n in set(names) - known if not n.startswith("qos_overrides."))


def unknown_warning(node_name: str, names: list[str], table: Table) -> str:
    """One sentence about parameters a node was given but does not have, with the closest
    known name for each where one is close (a typo)."""
    known = [p.name for p in table]
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return (
        f"ignoring parameter(s) that {node_name} does not have: {', '.join(parts)}; its "
        f"parameters are {', '.join(known)}"
    )


def override_problem(p: Parameter, value: Any) -> str:
    """Why a value given for ``p`` (a ``-p`` override or a YAML file's) cannot be used, in one
    sentence; "" when it is fine. Values of another ROS type than the default's count as bad
    unless ``p.dynamic_typing`` (a double takes an integer then)."""
    if not p.dynamic_typing and value is not None:
        expected = type(p.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            return (
                f"parameter {p.name} is {value}, an integer; it must be a double (write "
                f"{value}.0)"
            )
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            kinds = {bool: "true or false", int: "an integer", float: "a double",
                     str: "a string", list: "a list of integers"}
            return f"parameter {p.name} is {_quoted(value)}; it must be {kinds[expected]}"
    try:
        p.check(value)
    except InputError as exc:
        return str(exc)
    return ""


def declare(node: Any, table: Table) -> dict[str, str]:
    """Declares every parameter of ``table`` on an rclpy ``node``: read-only, with its
    description, its valid values as ``additional_constraints`` and its range as the
    descriptor's ``integer_range`` / ``floating_point_range``.

    A value given to the node (``-p``, a params file) that is of the wrong type or out of range
    does not raise here: the parameter keeps its default and the problem is returned, so that a
    lifecycle node comes up and reports it when it is configured (one sentence each).

    Returns:
        name -> the sentence saying why the given value was refused (empty: all fine).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import ParameterException

    overrides = getattr(node, "_parameter_overrides", {}) or {}
    problems: dict[str, str] = {}
    for p in table:
        descriptor = ParameterDescriptor(
            description=p.description,
            additional_constraints=p.constraints(),
            read_only=True,
            dynamic_typing=p.dynamic_typing,
        )
        integer = isinstance(p.default, int) and not isinstance(p.default, bool)
        if integer and p.minimum is not None:
            high = p.maximum if p.maximum is not None else 2**63 - 1
            descriptor.integer_range = [
                IntegerRange(from_value=int(p.minimum), to_value=int(high), step=1)
            ]
        elif isinstance(p.default, float) and p.minimum is not None and p.maximum is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(
                    from_value=float(p.minimum), to_value=float(p.maximum), step=0.0
                )
            ]
        given = overrides.get(p.name)
        problem = override_problem(p, given.value) if given is not None else ""
        if not problem:
            try:
                node.declare_parameter(p.name, p.default, descriptor)
                continue
            except ParameterException as exc:  # what rclpy refuses that the check let through
                problem = f"parameter {p.name}: {exc}"
        problems[p.name] = problem
        node.declare_parameter(p.name, p.default, descriptor, ignore_override=True)
    return problems


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
