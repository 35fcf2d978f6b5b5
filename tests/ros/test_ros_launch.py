"""launch/seg.launch.py's node plans, without launch_ros (not installable here).

The planning helper runs for real, and a stereo plan is started as real nodes. What both launch
files share (arguments, source checks, ``generate_launch_description()`` where launch_ros
imports) is in test_ros_launch_plan.py; config/seg.yaml against the parameter table in
test_ros_params.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import ros_paths as paths


@pytest.fixture(scope="module")
def launch():
    return paths.load_launch_module()


def values(**changes: str) -> dict[str, str]:
    base = {
        "model_path": "",
        "image_topic": "image_raw",
        "backend": "",
        "params_file": "",
        "namespace": "",
        "stereo": "false",
    }
    return {**base, **changes}


class TestPlans:
    def test_fastdds_profile_passed_to_the_nodes(self, launch, monkeypatch):
        var = "FASTDDS_DEFAULT_PROFILES_FILE"
        monkeypatch.delenv(var, raising=False)
        (plan,) = launch.node_plans(values(), "/share/seg.yaml", "/share/p.xml")
        assert plan["env"] == {var: "/share/p.xml"}
        plans = launch.node_plans(
            values(stereo="true", fastdds_profile="/mine.xml"), "/s.yaml", "/share/p.xml"
        )
        assert [p["env"] for p in plans] == [{var: "/mine.xml"}] * 2
        monkeypatch.setenv(var, "/users_own.xml")  # the user's choice is inherited as it is
        (plan,) = launch.node_plans(values(), "/share/seg.yaml", "/share/p.xml")
        assert plan["env"] == {}

    def test_mono(self, launch):
        (plan,) = launch.node_plans(values(namespace="/psm/left/"), "/share/seg.yaml")
        assert plan["name"] == plan["executable"] == "segmentation_node"
        assert plan["namespace"] == "/psm/left"
        assert plan["remappings"] == [("image", "image_raw")]
        assert plan["parameters"] == ["/share/seg.yaml", {}]

    def test_stereo_da_vinci_rig(self, launch):
        plans = launch.node_plans(
            values(stereo="True", namespace="/rig1", model_path="/m.onnx", backend="torch"),
            "/share/seg.yaml",
        )
        assert [p["namespace"] for p in plans] == ["/rig1/left", "/rig1/right"]
        for plan in plans:
            assert plan["remappings"] == [("image", "image_raw")]
            assert plan["parameters"] == [
                "/share/seg.yaml",
                {"model_path": "/m.onnx", "backend": "torch"},
            ]

    def test_params_file_argument_wins(self, launch):
        (plan,) = launch.node_plans(values(params_file="/mine.yaml"), "/share/seg.yaml")
        assert plan["parameters"][0] == "/mine.yaml"

    def test_missing_arguments_take_their_defaults(self, launch):
        (plan,) = launch.node_plans({}, "/share/seg.yaml")
        assert plan["remappings"] == [("image", "image_raw")]
        assert (plan["namespace"], plan["parameters"]) == ("", ["/share/seg.yaml", {}])

    def test_bad_stereo_value(self, launch):
        with pytest.raises(ValueError, match="stereo must be true or false"):
            launch.node_plans(values(stereo="maybe"), "/share/seg.yaml")


def test_stereo_plan_runs_left_and_right_nodes(launch, tiny_models, tmp_path):
    """The stereo plan, started as real nodes with the repo's seg.yaml: each side answers."""
    pytest.importorskip("rclpy")
    import ros_harness as rh
    from sensor_msgs.msg import Image

    from instrument_seg.ros.conversions import array_to_image

    plans = launch.node_plans(
        values(stereo="true", namespace="/dv_rig", model_path=str(tiny_models["onnx"])),
        str(paths.SEG_YAML),
    )
    nodes = [
        rh.NodeProcess(
            tmp_path / f"{k}.log",
            plan["namespace"],
            plan["parameters"][1],
            plan["parameters"][0],
            plan["remappings"],
        )
        for k, plan in enumerate(plans)
    ]
    probe = rh.Probe("stereo_probe")
    try:
        for side, node in zip(("left", "right"), nodes, strict=True):
            probe.subscribe(f"/dv_rig/{side}/mask", Image, rh.qos("reliable", 5))
            node.wait_ready(probe, f"/dv_rig/{side}/image_raw", f"/dv_rig/{side}/mask")
        frame = rh.camera_frame(48, 64)
        for k, side in enumerate(("left", "right")):
            pub = probe.node.create_publisher(Image, f"/dv_rig/{side}/image_raw", 1)
            header = rh.make_header(k, frame_id=f"{side}_camera")
            deadline = time.monotonic() + 20
            while probe.by_stamp(f"/dv_rig/{side}/mask", rh.stamp_key(header)) is None:
                assert time.monotonic() < deadline, nodes[k].output()
                pub.publish(array_to_image(frame, "rgb8", header))
                probe.wait_for(
                    lambda s=side, h=header: (
                        probe.by_stamp(f"/dv_rig/{s}/mask", rh.stamp_key(h)) is not None
                    ),
                    2.0,
                )
            mask = probe.by_stamp(f"/dv_rig/{side}/mask", rh.stamp_key(header))
            assert mask.header.frame_id == f"{side}_camera"
            assert (mask.height, mask.width, mask.encoding) == (48, 64, "mono8")
            assert set(np.unique(np.frombuffer(mask.data, np.uint8)).tolist()) <= {0, 255}
    finally:
        probe.close()
        statuses = [node.stop() for node in nodes]
    assert statuses == [0, 0]
