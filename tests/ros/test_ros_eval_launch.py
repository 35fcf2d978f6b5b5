"""launch/eval.launch.py and config/eval.yaml, checked without launch_ros where it is missing.

As for seg.launch.py: the file is parsed with ``ast``, its planning helper runs for real (and
its plans start the real nodes in test_ros_evaluation_node.py); where launch_ros imports,
``generate_launch_description()`` is called too.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re

import pytest
import ros_paths as paths
import yaml

DOCUMENTED = {
    "bag_path",
    "model_path",
    "backend",
    "threads",
    "pace",
    "rate",
    "output_dir",
    "bag_image_topic",
    "bag_gt_topic",
    "namespace",
    "seg_params_file",
    "eval_params_file",
}


@pytest.fixture(scope="module")
def launch():
    return paths.load_launch_module(paths.EVAL_LAUNCH_FILE)


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(paths.EVAL_LAUNCH_FILE.read_text(), filename=str(paths.EVAL_LAUNCH_FILE))


def plans(launch, **values: str) -> list[dict]:
    return launch.node_plans(values, "/share/seg.yaml", "/share/eval.yaml")


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
            assert {"default_value", "description"} <= {k.arg for k in call.keywords}

    def test_nothing_is_evaluated(self, tree):
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not {"eval", "exec", "PythonExpression", "compile"} & (names | attributes)

    def test_executables_are_console_scripts(self, launch):
        scripts = {
            ep.name: ep.value
            for ep in importlib.metadata.distribution("instrument_seg").entry_points
            if ep.group == "console_scripts"
        }
        assert scripts[launch.SEG_EXECUTABLE] == "instrument_seg.ros.segmentation_node:main"
        assert scripts[launch.EVAL_EXECUTABLE] == "instrument_seg.ros.evaluation_node:main"
        assert launch.PACKAGE == "instrument_seg"

    def test_default_parameters_are_the_installed_configs(self, launch, tree):
        assert launch.SEG_CONFIG == ("config", "seg.yaml")
        assert launch.EVAL_CONFIG == ("config", "eval.yaml")
        for config in (launch.SEG_CONFIG, launch.EVAL_CONFIG):
            assert (paths.REPO / "/".join(config)).is_file()
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "get_package_share_directory" in names

    def test_the_evaluation_ending_shuts_the_launch_down(self, tree):
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert {"OnProcessExit", "Shutdown", "EmitEvent", "RegisterEventHandler"} <= names


class TestPlans:
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


class TestEvalYaml:
    def test_lists_every_node_parameter_with_its_default(self):
        pytest.importorskip("rclpy")
        from instrument_seg.ros.evaluation_node import PARAMETERS

        data = yaml.safe_load(paths.EVAL_YAML.read_text())
        assert list(data) == ["/**"]
        params = data["/**"]["ros__parameters"]
        assert list(params) == list(PARAMETERS)
        for name, (default, description) in PARAMETERS.items():
            assert params[name] == default, name
            assert len(description.split()) >= 4, name

    def test_docs_table_lists_every_parameter_with_its_default(self):
        pytest.importorskip("rclpy")
        from instrument_seg.ros.evaluation_node import PARAMETERS

        docs = (paths.REPO / "docs" / "evaluation.md").read_text()
        section = docs.split("\n### Parameters\n", 1)[1].split("\n## ", 1)[0]
        rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, flags=re.M))
        assert set(rows) == set(PARAMETERS)
        for name, (default, _) in PARAMETERS.items():
            assert yaml.safe_load(rows[name]) == default, name

    def test_settings_reject_bad_values(self):
        pytest.importorskip("rclpy")
        from instrument_seg.errors import InputError
        from instrument_seg.ros.evaluation_node import PARAMETERS, settings_from

        base = {name: default for name, (default, _) in PARAMETERS.items()}
        base["bag_path"] = "/b"
        assert settings_from({**base, "rate": "15"}).rate == 15.0  # strings from launch
        for change, words in (
            ({"bag_path": ""}, "bag_path is empty"),
            ({"mode": "record"}, "mode is 'record'"),
            ({"pace": "fixed", "rate": 0.0}, "needs a rate > 0"),
            ({"rate": "fast"}, "rate is 'fast'; it must be a number"),
            ({"mask_timeout": -1.0}, "mask_timeout is -1.0"),
            ({"output_dir": " "}, "output_dir is empty"),
        ):
            with pytest.raises(InputError, match=re.escape(words)):
                settings_from({**base, **change})
        assert settings_from({**base, "mode": "listen", "bag_path": ""}).mode == "listen"


@pytest.mark.skipif(
    importlib.util.find_spec("launch_ros") is None, reason="launch_ros is not installed here"
)
def test_generate_launch_description(launch):
    from launch.actions import DeclareLaunchArgument

    description = launch.generate_launch_description()
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert {a.name for a in declared} == DOCUMENTED
    assert all(a.description for a in declared)
