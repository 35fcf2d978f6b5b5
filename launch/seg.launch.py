"""Launches segmentation_node for one camera, or a left and a right instance for a stereo rig.

    ros2 launch instrument_seg seg.launch.py model_path:=/models/unet.onnx \
        namespace:=/psm_rig stereo:=true

Mono: one node in ``namespace`` reading ``image_topic``. Stereo (da Vinci rigs publish
``/<rig>/left/image_raw`` and ``/<rig>/right/image_raw``): two nodes, in ``<namespace>/left`` and
``<namespace>/right``, each reading its side's ``image_topic``; outputs follow the namespace
(``/<rig>/left/mask``, ``/<rig>/left/confidence``, ...). Parameters come from ``params_file``
(default: the installed ``config/seg.yaml``); a non-empty ``model_path`` or ``backend`` argument
overrides the file. Arguments are plain strings: nothing is evaluated.

The launch imports sit inside the functions so the planning helpers below import (and are
tested) where launch_ros is not installed.
"""

from __future__ import annotations

PACKAGE = "instrument_seg"
EXECUTABLE = "segmentation_node"
CONFIG = ("config", "seg.yaml")

# name -> (default, description); every argument of this file, in one place.
ARGUMENTS: dict[str, tuple[str, str]] = {
    "model_path": (
        "",
        "Model file (.onnx, .engine, .pt or a run directory); empty keeps params_file's value.",
    ),
    "image_topic": (
        "image_raw",
        "Image topic each node subscribes to, relative to its namespace (remaps 'image').",
    ),
    "backend": (
        "",
        "Inference backend: auto, tensorrt, onnxruntime or torch; empty keeps params_file's.",
    ),
    "params_file": (
        "",
        "Node parameters YAML; empty uses the installed instrument_seg/config/seg.yaml.",
    ),
    "namespace": (
        "",
        "Namespace of the node, or of the rig in stereo mode (e.g. /psm_rig).",
    ),
    "stereo": (
        "false",
        "true: run a left and a right node in <namespace>/left and <namespace>/right.",
    ),
}


def is_true(text: str) -> bool:
    """Launch-argument truth: true/1/yes/on (any case) is True; false/0/no/off/'' is False."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"stereo must be true or false, got '{text}'")


def node_plans(values: dict[str, str], default_params_file: str) -> list[dict]:
    """Which nodes to start, from the launch arguments' values.

    Returns:
        One dict per node: ``name`` (the same for both sides: the namespaces tell them apart),
        ``namespace``, ``remappings`` (list of pairs),
        ``parameters`` (the params file path, then a dict of overrides).
    """
    namespace = values["namespace"].strip().rstrip("/")
    params_file = values["params_file"].strip() or default_params_file
    overrides = {k: values[k].strip() for k in ("model_path", "backend") if values[k].strip()}
    sides = ("left", "right") if is_true(values["stereo"]) else (None,)
    plans = []
    for side in sides:
        plans.append(
            {
                "name": EXECUTABLE,
                "namespace": namespace if side is None else f"{namespace}/{side}",
                "remappings": [("image", values["image_topic"].strip())],
                "parameters": [params_file, overrides],
            }
        )
    return plans


def _launch_nodes(context, *args, **kwargs):
    from ament_index_python.packages import get_package_share_directory
    from launch_ros.actions import Node

    values = {name: context.perform_substitution(_config(name)) for name in ARGUMENTS}
    default_params = "/".join((get_package_share_directory(PACKAGE), *CONFIG))
    return [
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=plan["name"],
            namespace=plan["namespace"],
            remappings=plan["remappings"],
            parameters=plan["parameters"],
            output="screen",
            emulate_tty=True,
        )
        for plan in node_plans(values, default_params)
    ]


def _config(name: str):
    from launch.substitutions import LaunchConfiguration

    return LaunchConfiguration(name)


def generate_launch_description():
    """The launch description: the arguments above, then the node(s) they describe."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=default, description=description)
            for name, (default, description) in ARGUMENTS.items()
        ]
        + [OpaqueFunction(function=_launch_nodes)]
    )
