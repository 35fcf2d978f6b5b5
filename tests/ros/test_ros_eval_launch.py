"""launch/eval.launch.py's node plans, without launch_ros (not installable here).

The planning helper runs for real (and its plans start the real nodes in
test_ros_evaluation_node.py). What both launch files share (arguments, source checks,
``generate_launch_description()`` where launch_ros imports) is in test_ros_launch_plan.py;
config/eval.yaml and parameter validation in test_ros_params.py.
"""

from __future__ import annotations

import ast

import pytest
import ros_paths as paths


@pytest.fixture(scope="module")
def launch():
    return paths.load_launch_module(paths.EVAL_LAUNCH_FILE)


def plans(launch, **values: str) -> list[dict]:
    return launch.node_plans(values, "/share/seg.yaml", "/share/eval.yaml")


def test_the_evaluation_ending_shuts_the_launch_down():
    tree = ast.parse(paths.EVAL_LAUNCH_FILE.read_text())
    call = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "launch_description"
    )
    ends = {k.arg: k.value for k in call.keywords}["ends_launch"]
    assert getattr(ends, "id", "") == "EVAL_EXECUTABLE"


class TestPlans:
    def test_fastdds_profile_passed_to_both_nodes(self, launch, monkeypatch):
        monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
        seg, ev = launch.node_plans({}, "/s.yaml", "/e.yaml", "/share/p.xml")
        assert seg["env"] == ev["env"] == {"FASTDDS_DEFAULT_PROFILES_FILE": "/share/p.xml"}

    def test_defaults(self, launch):
        seg, ev = plans(launch)
        assert (seg["executable"], ev["executable"]) == ("segmentation_node", "evaluation_node")
        assert seg["namespace"] == ev["namespace"] == ""
        assert seg["remappings"] == ev["remappings"] == []  # image and mask meet as they are
        assert seg["parameters"] == ["/share/seg.yaml", {}]
        assert ev["parameters"] == ["/share/eval.yaml", {}]

    def test_overrides(self, launch):
        seg, ev = plans(
            launch,
            bag_path="/data/run.bag",
            model_path="/m.onnx",
            backend="onnxruntime",
            threads="1",
            pace="fixed",
            rate="15",
            output_dir="/tmp/out",
            bag_image_topic="/rig/left/image_raw",
            bag_gt_topic="/rig/left/labels",
            namespace="/rig/",
        )
        assert seg["namespace"] == ev["namespace"] == "/rig"
        assert seg["parameters"][1] == {
            "model_path": "/m.onnx",
            "backend": "onnxruntime",
            "threads": 1,
        }
        assert ev["parameters"][1] == {
            "bag_path": "/data/run.bag",
            "output_dir": "/tmp/out",
            "bag_image_topic": "/rig/left/image_raw",
            "bag_gt_topic": "/rig/left/labels",
            "pace": "fixed",
            "rate": 15.0,
        }

    def test_params_files_win(self, launch):
        seg, ev = plans(launch, seg_params_file="/s.yaml", eval_params_file="/e.yaml")
        assert (seg["parameters"][0], ev["parameters"][0]) == ("/s.yaml", "/e.yaml")

    @pytest.mark.parametrize(
        ("name", "value", "words"),
        [
            ("pace", "fast", "pace must be one of lockstep, recorded, fixed"),
            ("rate", "ten", "rate must be a number"),
            ("threads", "1.5", "threads must be an integer"),
        ],
    )
    def test_bad_values(self, launch, name, value, words):
        with pytest.raises(ValueError, match=words):
            plans(launch, **{name: value})
