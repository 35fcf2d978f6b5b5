"""Launches segmentation_node for one camera, or a left and a right instance for a stereo rig.

    ros2 launch instrument_seg seg.launch.py model_path:=/models/unet.onnx \
        namespace:=/psm_rig stereo:=true

Mono: one node in ``namespace`` reading ``image_topic``. Stereo (da Vinci rigs publish
``/<rig>/left/image_raw`` and ``/<rig>/right/image_raw``): two nodes, in ``<namespace>/left`` and
``<namespace>/right``, each reading its side's ``image_topic``; outputs follow the namespace
(``/<rig>/left/mask``, ``/<rig>/left/confidence``, ...). Parameters come from ``params_file``
(default: the installed ``config/seg.yaml``); a non-empty ``model_path`` or ``backend`` argument
overrides the file. Arguments are plain strings: nothing is evaluated.

The launch machinery shared with eval.launch.py is :mod:`instrument_seg.ros.launch_plan`; it
imports launch_ros only when ``ros2 launch`` builds the description, so :func:`node_plans`
imports (and is tested) where launch_ros is not installed.
"""

from __future__ import annotations

from instrument_seg.ros.launch_plan import (
    PROFILE_CONFIG,
    argument_values,
    as_bool,
    clean_namespace,
    launch_description,
    node_plan,
    profile_env,
)

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
    "fastdds_profile": (
        "",
        "FastDDS XML profile for the started nodes (FASTDDS_DEFAULT_PROFILES_FILE); empty: the "
        "installed config/fastdds_large_data.xml unless the environment already names one.",
    ),
}


def node_plans(
    values: dict[str, str], default_params_file: str, default_profile: str = ""
) -> list[dict]:
    """Which nodes to start, from the launch arguments' values.

    Returns:
        One plan per node (:func:`instrument_seg.ros.launch_plan.node_plan`): the same name for
        both sides (the namespaces tell them apart), ``image`` remapped to ``image_topic``,
        parameters from the params file, then ``model_path`` / ``backend`` if given, and the
        FastDDS profile (``fastdds_profile``, else ``default_profile`` unless the environment
        names one) in their environment.

    Raises:
        ValueError: ``stereo`` is not a truth value.
    """
    v = argument_values(values, ARGUMENTS)
    ns = clean_namespace(v["namespace"])
    overrides = {k: v[k] for k in ("model_path", "backend") if v[k]}
    sides = ("left", "right") if as_bool("stereo", v["stereo"]) else (None,)
    env = profile_env(v["fastdds_profile"], default_profile)
    return [
        node_plan(
            EXECUTABLE,
            ns if side is None else f"{ns}/{side}",
            v["params_file"] or default_params_file,
            overrides,
            [("image", v["image_topic"])],
            env,
        )
        for side in sides
    ]


def _plans(values: dict[str, str], installed) -> list[dict]:
    return node_plans(values, installed(CONFIG), installed(PROFILE_CONFIG))


def generate_launch_description():
    """The launch description: the arguments above, then the node(s) they describe."""
    return launch_description(ARGUMENTS, _plans)
