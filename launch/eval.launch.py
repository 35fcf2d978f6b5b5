"""Launches segmentation_node and evaluation_node on a bag; the launch ends with the evaluation.

    ros2 launch instrument_seg eval.launch.py bag_path:=/data/demo.bag \
        model_path:=/models/unet.onnx output_dir:=/tmp/eval pace:=lockstep

Both nodes run in ``namespace``: evaluation_node replays the bag's frames on ``image`` (relative,
so the segmentation node's own ``image`` subscription receives them) and scores the ``mask``
answers against the bag's ground truth by stamp, then writes its report to ``output_dir`` and
exits; its exit shuts the whole launch down. Parameters come from ``seg_params_file`` and
``eval_params_file`` (default: the installed ``config/seg.yaml`` and ``config/eval.yaml``); a
non-empty argument below overrides the file's value. Arguments are plain strings: nothing is
evaluated.

The launch machinery shared with seg.launch.py is :mod:`instrument_seg.ros.launch_plan`; it
imports launch_ros only when ``ros2 launch`` builds the description, so :func:`node_plans`
imports (and is tested) where launch_ros is not installed.
"""

from __future__ import annotations

from instrument_seg.ros.launch_plan import (
    PROFILE_CONFIG,
    argument_values,
    as_choice,
    as_float,
    as_int,
    clean_namespace,
    launch_description,
    node_plan,
    profile_env,
)
from instrument_seg.ros.params import PACES

SEG_EXECUTABLE = "segmentation_node"
EVAL_EXECUTABLE = "evaluation_node"
SEG_CONFIG = ("config", "seg.yaml")
EVAL_CONFIG = ("config", "eval.yaml")

# name -> (default, description); every argument of this file, in one place.
ARGUMENTS: dict[str, tuple[str, str]] = {
    "bag_path": (
        "",
        "rosbag2 bag to replay (directory, or .mcap / .db3 file); empty keeps "
        "eval_params_file's value.",
    ),
    "model_path": (
        "",
        "Model for the segmentation node (.onnx, .engine, .pt or a run directory); empty keeps "
        "seg_params_file's value.",
    ),
    "backend": (
        "",
        "Inference backend: auto, tensorrt, onnxruntime or torch; empty keeps seg_params_file's.",
    ),
    "threads": (
        "",
        "CPU threads of the segmentation node's backend (integer, 0 = its default); empty keeps "
        "seg_params_file's value.",
    ),
    "pace": (
        "",
        "Replay pacing: lockstep (exact accuracy), recorded (the bag's timing) or fixed (rate "
        "Hz); empty keeps eval_params_file's value.",
    ),
    "rate": ("", "Frames per second for pace fixed; empty keeps eval_params_file's value."),
    "output_dir": (
        "",
        "Directory for the report (JSON, Markdown, two PNG plots); empty keeps "
        "eval_params_file's value.",
    ),
    "bag_image_topic": (
        "",
        "Topic of the frames inside the bag; empty: the bag's own (see docs/evaluation.md).",
    ),
    "bag_gt_topic": (
        "",
        "Topic of the ground-truth masks inside the bag; empty: the bag's own.",
    ),
    "namespace": ("", "Namespace of both nodes (their image and mask topics meet in it)."),
    "seg_params_file": (
        "",
        "segmentation_node parameters YAML; empty uses the installed instrument_seg/config/"
        "seg.yaml.",
    ),
    "eval_params_file": (
        "",
        "evaluation_node parameters YAML; empty uses the installed instrument_seg/config/"
        "eval.yaml.",
    ),
    "fastdds_profile": (
        "",
        "FastDDS XML profile for the started nodes (FASTDDS_DEFAULT_PROFILES_FILE); empty: the "
        "installed config/fastdds_large_data.xml unless the environment already names one.",
    ),
}


def node_plans(
    values: dict[str, str],
    default_seg_params: str,
    default_eval_params: str,
    default_profile: str = "",
) -> list[dict]:
    """The two nodes to start, from the launch arguments' values.

    Returns:
        ``[segmentation plan, evaluation plan]`` (:func:`instrument_seg.ros.launch_plan.
        node_plan`), both in ``namespace`` with no remappings (both use the relative ``image``
        and ``mask``), each with its params file, then the non-empty arguments as overrides,
        and the FastDDS profile (``fastdds_profile``, else ``default_profile`` unless the
        environment names one) in their environment.

    Raises:
        ValueError: ``pace``, ``rate`` or ``threads`` is not a valid value.
    """
    v = argument_values(values, ARGUMENTS)
    ns = clean_namespace(v["namespace"])
    seg: dict = {k: v[k] for k in ("model_path", "backend") if v[k]}
    if v["threads"]:
        seg["threads"] = as_int("threads", v["threads"])
    ev: dict = {
        k: v[k] for k in ("bag_path", "output_dir", "bag_image_topic", "bag_gt_topic") if v[k]
    }
    if v["pace"]:
        ev["pace"] = as_choice("pace", v["pace"], PACES)
    if v["rate"]:
        ev["rate"] = as_float("rate", v["rate"], "a number of frames per second")
    env = profile_env(v["fastdds_profile"], default_profile)
    return [
        node_plan(SEG_EXECUTABLE, ns, v["seg_params_file"] or default_seg_params, seg, (), env),
        node_plan(EVAL_EXECUTABLE, ns, v["eval_params_file"] or default_eval_params, ev, (), env),
    ]


def _plans(values: dict[str, str], installed) -> list[dict]:
    return node_plans(
        values, installed(SEG_CONFIG), installed(EVAL_CONFIG), installed(PROFILE_CONFIG)
    )


def generate_launch_description():
    """The launch description: the arguments above, then the two nodes they describe; the
    evaluation node's exit shuts the launch down."""
    return launch_description(ARGUMENTS, _plans, ends_launch=EVAL_EXECUTABLE)
