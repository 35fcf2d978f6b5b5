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

The launch imports sit inside the functions so the planning helpers below import (and are
tested) where launch_ros is not installed.
"""

from __future__ import annotations

PACKAGE = "instrument_seg"
SEG_EXECUTABLE = "segmentation_node"
EVAL_EXECUTABLE = "evaluation_node"
SEG_CONFIG = ("config", "seg.yaml")
EVAL_CONFIG = ("config", "eval.yaml")
PACES = ("lockstep", "recorded", "fixed")

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
}


def node_plans(
    values: dict[str, str], default_seg_params: str, default_eval_params: str
) -> list[dict]:
    """The two nodes to start, from the launch arguments' values.

    Returns:
        ``[segmentation plan, evaluation plan]``, each a dict: ``name``, ``executable``,
        ``namespace``, ``remappings`` (list of pairs; none: both use the relative ``image`` and
        ``mask``), ``parameters`` (the params file path, then a dict of overrides).

    Raises:
        ValueError: ``pace``, ``rate`` or ``threads`` is not a valid value.
    """
    v = {name: values.get(name, "").strip() for name in ARGUMENTS}
    namespace = v["namespace"].rstrip("/")
    seg = {k: v[k] for k in ("model_path", "backend") if v[k]}
    if v["threads"]:
        try:
            seg["threads"] = int(v["threads"])
        except ValueError:
            raise ValueError(f"threads must be an integer, got '{v['threads']}'") from None
    ev = {k: v[k] for k in ("bag_path", "output_dir", "bag_image_topic", "bag_gt_topic") if v[k]}
    if v["pace"]:
        if v["pace"] not in PACES:
            raise ValueError(f"pace must be one of {', '.join(PACES)}, got '{v['pace']}'")
        ev["pace"] = v["pace"]
    if v["rate"]:
        try:
            ev["rate"] = float(v["rate"])
        except ValueError:
            raise ValueError(
                f"rate must be a number of frames per second, got '{v['rate']}'"
            ) from None
    return [
        {
            "name": SEG_EXECUTABLE,
            "executable": SEG_EXECUTABLE,
            "namespace": namespace,
            "remappings": [],
            "parameters": [v["seg_params_file"] or default_seg_params, seg],
        },
        {
            "name": EVAL_EXECUTABLE,
            "executable": EVAL_EXECUTABLE,
            "namespace": namespace,
            "remappings": [],
            "parameters": [v["eval_params_file"] or default_eval_params, ev],
        },
    ]


def _launch_nodes(context, *args, **kwargs):
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch_ros.actions import Node

    values = {name: context.perform_substitution(_config(name)) for name in ARGUMENTS}
    share = get_package_share_directory(PACKAGE)
    seg_plan, eval_plan = node_plans(
        values, "/".join((share, *SEG_CONFIG)), "/".join((share, *EVAL_CONFIG))
    )
    nodes = [
        Node(
            package=PACKAGE,
            executable=plan["executable"],
            name=plan["name"],
            namespace=plan["namespace"],
            remappings=plan["remappings"],
            parameters=plan["parameters"],
            output="screen",
            emulate_tty=True,
        )
        for plan in (seg_plan, eval_plan)
    ]
    done = RegisterEventHandler(
        OnProcessExit(
            target_action=nodes[1],
            on_exit=[EmitEvent(event=Shutdown(reason="evaluation finished"))],
        )
    )
    return [*nodes, done]


def _config(name: str):
    from launch.substitutions import LaunchConfiguration

    return LaunchConfiguration(name)


def generate_launch_description():
    """The launch description: the arguments above, then the two nodes they describe."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=default, description=description)
            for name, (default, description) in ARGUMENTS.items()
        ]
        + [OpaqueFunction(function=_launch_nodes)]
    )
