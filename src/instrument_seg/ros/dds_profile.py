"""The FastDDS profile shipped for camera-sized messages, and when a process uses it.

FastDDS's default shared-memory segment is far smaller than a camera frame, so large samples
fall back to UDP fragments over loopback, where best effort loses nearly all of them (measured
in docs/ros.md). ``config/fastdds_large_data.xml`` gives the shared-memory transport a 64 MiB
segment; it only helps in a *publishing* process, and FastDDS reads it when the participant is
created (``rclpy.init``), from ``FASTDDS_DEFAULT_PROFILES_FILE``. :func:`use_shipped_profile`
sets that variable unless the user already chose a FastDDS configuration.

Plain Python (no rclpy): launch files use it too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

PROFILE_FILE = "fastdds_large_data.xml"
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
#: Variables by which a user configures FastDDS (the Fast DDS 2 name included): when any is set,
#: the nodes leave the configuration alone.
USER_VARIABLES = (PROFILE_VARIABLE, "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def shipped_profile() -> Path | None:
    """The installed profile: the colcon share directory, the pip data files, or the source
    tree's ``config/`` (editable install); None if none of them has it."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("instrument_seg")) / "config")
    except Exception:  # not installed with colcon, or ament_index_python missing
        pass
    candidates.append(Path(sys.prefix) / "share" / "instrument_seg" / "config")
    candidates.append(Path(__file__).resolve().parents[3] / "config")
    for directory in candidates:
        path = directory / PROFILE_FILE
        if path.is_file():
            return path
    return None


def use_shipped_profile(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Points ``FASTDDS_DEFAULT_PROFILES_FILE`` at the shipped profile unless one of
    :data:`USER_VARIABLES` is set (non-empty). Call before ``rclpy.init``.

    Returns:
        The profile now in use by this process's participants ("" / None: the user's own
        configuration, or none shipped).
    """
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in USER_VARIABLES):
        return env.get(PROFILE_VARIABLE) or None
    path = shipped_profile()
    if path is None:
        return None
    env[PROFILE_VARIABLE] = str(path)
    return str(path)
