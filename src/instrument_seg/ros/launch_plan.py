"""What launch/seg.launch.py and launch/eval.launch.py share: argument parsing, node plans and
the launch description built from them.

A launch file here is a table of arguments (name -> (default, description)) and a function that
turns their values into *node plans*: plain dicts (``name``, ``executable``, ``namespace``,
``remappings``, ``parameters`` = [params file, overrides]) from which :func:`launch_description`
builds the ``launch_ros`` nodes. Importing this module needs neither ``launch`` nor
``launch_ros`` nor rclpy (they are imported inside the functions that ``ros2 launch`` calls),
so the installed launch files import it everywhere and their plans are tested where
launch_ros is not installable. Arguments are plain strings: nothing is evaluated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from instrument_seg.ros.dds_profile import PROFILE_FILE, PROFILE_VARIABLE, USER_VARIABLES

PACKAGE = "instrument_seg"
#: The shipped FastDDS profile in the installed share (config parts, as ``installed`` takes).
PROFILE_CONFIG = ("config", PROFILE_FILE)

#: name -> (default, description) of every argument of a launch file.
Arguments = dict[str, tuple[str, str]]
#: (argument values, installed(config parts) -> path) -> node plans.
Planner = Callable[[dict[str, str], Callable[[tuple[str, ...]], str]], list[dict]]


def argument_values(values: dict[str, str], arguments: Arguments) -> dict[str, str]:
    """Every argument's value, stripped; a missing one takes its default."""
    return {name: values.get(name, default).strip() for name, (default, _) in arguments.items()}


def clean_namespace(text: str) -> str:
    """A namespace argument without its trailing slash (``/rig/`` -> ``/rig``)."""
    return text.strip().rstrip("/")


def as_bool(name: str, text: str) -> bool:
    """Launch-argument truth: true/1/yes/on (any case) is True; false/0/no/off/'' is False.

    Raises:
        ValueError: anything else (naming the argument).
    """
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be true or false, got '{text}'")


def as_int(name: str, text: str) -> int:
    """``text`` as an integer. Raises ValueError naming the argument."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got '{text}'") from None


def as_float(name: str, text: str, what: str = "a number") -> float:
    """``text`` as a float; ``what`` says what it must be. Raises ValueError naming it."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be {what}, got '{text}'") from None


def as_choice(name: str, text: str, choices: Iterable[str]) -> str:
    """``text`` if it is one of ``choices``. Raises ValueError naming the argument."""
    choices = tuple(choices)
    if text not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got '{text}'")
    return text


def profile_env(
    argument: str, installed_profile: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a started node gets for FastDDS: ``argument`` if given, else the
    installed profile unless the launching environment already configures FastDDS."""
    env = os.environ if environ is None else environ
    if argument:
        return {PROFILE_VARIABLE: argument}
    if any(env.get(name) for name in USER_VARIABLES) or not installed_profile:
        return {}
    return {PROFILE_VARIABLE: installed_profile}


def node_plan(
    executable: str,
    namespace: str,
    params_file: str,
    overrides: dict[str, Any],
    remappings: Iterable[tuple[str, str]] = (),
    env: dict[str, str] | None = None,
) -> dict:
    """One node to start: the console script ``executable`` (also its node name) in
    ``namespace``, parameters from ``params_file`` then ``overrides``, extra environment
    ``env`` (the FastDDS profile)."""
    return {
        "name": executable,
        "executable": executable,
        "namespace": namespace,
        "remappings": list(remappings),
        "parameters": [params_file, overrides],
        "env": dict(env or {}),
    }


def launch_description(arguments: Arguments, planner: Planner, ends_launch: str = ""):
    """The launch description of a launch file: one ``DeclareLaunchArgument`` (with default and
    description) per argument, then the nodes ``planner`` plans from their values.

    Args:
        arguments: the file's arguments.
        planner: ``(values, installed) -> plans``; ``installed(("config", "seg.yaml"))`` is
            that file's path in the installed package share.
        ends_launch: the executable whose exit shuts the whole launch down ("": none).
    """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, (default, description) in arguments.items()
    ]
    start = OpaqueFunction(
        function=_launch_nodes,
        kwargs={"arguments": arguments, "planner": planner, "ends_launch": ends_launch},
    )
    return LaunchDescription([*declared, start])


def _launch_nodes(context, *, arguments: Arguments, planner: Planner, ends_launch: str):
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    values = {name: context.perform_substitution(LaunchConfiguration(name)) for name in arguments}
    share = get_package_share_directory(PACKAGE)
    actions = []
    for plan in planner(values, lambda parts: "/".join((share, *parts))):
        node = Node(
            package=PACKAGE,
            executable=plan["executable"],
            name=plan["name"],
            namespace=plan["namespace"],
            remappings=plan["remappings"],
            parameters=plan["parameters"],
            additional_env=plan.get("env") or None,
            output="screen",
            emulate_tty=True,
        )
        actions.append(node)
        if plan["executable"] == ends_launch:
            actions.append(
                RegisterEventHandler(
                    OnProcessExit(
                        target_action=node,
                        on_exit=[EmitEvent(event=Shutdown(reason=f"{ends_launch} finished"))],
                    )
                )
            )
    return actions
