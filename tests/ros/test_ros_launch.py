"""launch/seg.launch.py and config/seg.yaml, checked without launch_ros where it is missing.

launch/launch_ros are not installable here: the file is parsed with ``ast``, its planning
helpers run for real, and a stereo plan is started as real nodes. Where launch_ros imports,
``generate_launch_description()`` is called too.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import time

import numpy as np
import pytest
import ros_paths as paths
import yaml

DOCUMENTED = {"model_path", "image_topic", "backend", "params_file", "namespace", "stereo"}


@pytest.fixture(scope="module")
def launch():
    return paths.load_launch_module()


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(paths.LAUNCH_FILE.read_text(), filename=str(paths.LAUNCH_FILE))


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


class TestLaunchFileSource:
    def test_declares_the_documented_arguments_with_descriptions(self, launch, tree):
        arguments = next(
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "ARGUMENTS"
        )
        declared = ast.literal_eval(arguments)
        assert set(declared) == DOCUMENTED == set(launch.ARGUMENTS)
        for name, (default, description) in declared.items():
            assert isinstance(default, str), name
            assert len(description.split()) >= 4, name
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "DeclareLaunchArgument"
        ]
        assert calls, "no DeclareLaunchArgument"
        for call in calls:
            keywords = {k.arg for k in call.keywords}
            assert {"default_value", "description"} <= keywords

    def test_nothing_is_evaluated(self, tree):
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not {"eval", "exec", "PythonExpression", "compile"} & (names | attributes)

    def test_executable_is_a_console_script(self, launch):
        scripts = {
            ep.name: ep.value
            for ep in importlib.metadata.distribution("instrument_seg").entry_points
            if ep.group == "console_scripts"
        }
        assert scripts[launch.EXECUTABLE] == "instrument_seg.ros.segmentation_node:main"
        assert launch.PACKAGE == "instrument_seg"

    def test_default_parameters_are_the_installed_config(self, launch, tree):
        assert launch.CONFIG == ("config", "seg.yaml")
        assert (paths.REPO / "/".join(launch.CONFIG)).is_file()
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "get_package_share_directory" in names


class TestPlans:
    def test_mono(self, launch):
        (plan,) = launch.node_plans(values(namespace="/psm/left/"), "/share/seg.yaml")
        assert plan["name"] == "segmentation_node"
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

    def test_bad_stereo_value(self, launch):
        with pytest.raises(ValueError, match="stereo must be true or false"):
            launch.node_plans(values(stereo="maybe"), "/share/seg.yaml")


class TestSegYaml:
    def test_lists_every_node_parameter_with_its_default(self):
        pytest.importorskip("rclpy")
        from instrument_seg.ros.segmentation_node import PARAMETERS

        data = yaml.safe_load(paths.SEG_YAML.read_text())
        assert list(data) == ["/**"]
        params = data["/**"]["ros__parameters"]
        assert list(params) == list(PARAMETERS)
        for name, (default, description) in PARAMETERS.items():
            assert params[name] == default, name
            assert description


    def test_docs_table_lists_every_parameter_with_its_default(self):
        pytest.importorskip("rclpy")
        from instrument_seg.ros.segmentation_node import PARAMETERS

        docs = (paths.REPO / "docs" / "ros.md").read_text()
        section = docs.split("\n## Parameters\n", 1)[1].split("\n## ", 1)[0]
        rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, flags=re.M))
        assert set(rows) == set(PARAMETERS)
        for name, (default, _) in PARAMETERS.items():
            assert yaml.safe_load(rows[name]) == default, name


@pytest.mark.skipif(
    importlib.util.find_spec("launch_ros") is None, reason="launch_ros is not installed here"
)
def test_generate_launch_description(launch):
    from launch.actions import DeclareLaunchArgument

    description = launch.generate_launch_description()
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert {a.name for a in declared} == DOCUMENTED
    assert all(a.description for a in declared)


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
