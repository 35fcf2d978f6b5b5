"""The shipped FastDDS profile: its content, where it is found, when a process uses it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import ros_paths as paths

from instrument_seg.ros import dds_profile

NS = {"dds": "http://www.eprosima.com"}
PROFILE = paths.REPO / "config" / dds_profile.PROFILE_FILE


def test_shared_memory_segment_holds_camera_frames():
    root = ET.parse(PROFILE).getroot()
    (shm,) = [
        t
        for t in root.iterfind(".//dds:transport_descriptor", NS)
        if t.findtext("dds:type", namespaces=NS) == "SHM"
    ]
    assert int(shm.findtext("dds:segment_size", namespaces=NS)) >= 64 * 2**20
    assert int(shm.findtext("dds:maxMessageSize", namespaces=NS)) >= 6 * 2**20  # 5.2 MB map
    (participant,) = root.iterfind(".//dds:participant", NS)
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind(".//dds:userTransports/dds:transport_id", NS)]
    assert shm.findtext("dds:transport_id", namespaces=NS) in used
    assert len(used) == 2  # UDPv4 kept for discovery and other hosts


def test_found_from_the_source_tree():
    assert dds_profile.shipped_profile().read_text() == PROFILE.read_text()


def test_used_unless_the_user_configured_fastdds():
    env: dict[str, str] = {}
    assert dds_profile.use_shipped_profile(env) == str(dds_profile.shipped_profile())
    assert env == {dds_profile.PROFILE_VARIABLE: str(dds_profile.shipped_profile())}
    for name in dds_profile.USER_VARIABLES:
        env = {name: "/users/own.xml"}
        dds_profile.use_shipped_profile(env)
        assert env == {name: "/users/own.xml"}
    empty = {dds_profile.PROFILE_VARIABLE: ""}  # set but empty: not a choice
    assert dds_profile.use_shipped_profile(empty) == str(dds_profile.shipped_profile())
