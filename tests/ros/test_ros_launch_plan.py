"""What both launch files share: instrument_seg.ros.launch_plan and the files' own source.

launch/launch_ros are not installable here: the files and launch_plan.py are parsed with
``ast`` (arguments with descriptions, nothing evaluated, the launch actions used), the planning
helpers run for real, and importing the files is checked to load no launch, launch_ros or
rclpy. Where launch_ros imports, ``generate_launch_description()`` is called too. Each file's
own plans are in test_ros_launch.py and test_ros_eval_launch.py.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import ros_paths as paths

from instrument_seg.ros import launch_plan

PLAN_FILE = Path(launch_plan.__file__)
#: launch file -> (its documented arguments, executable name -> console-script target)
FILES = {
    "seg.launch.py": (
        paths.LAUNCH_FILE,
        {
            "model_path",
            "image_topic",
            "backend",
            "params_file",
            "namespace",
            "stereo",
            "fastdds_profile",
        },
        {"EXECUTABLE": "instrument_seg.ros.segmentation_node:main"},
    ),
    "eval.launch.py": (
        paths.EVAL_LAUNCH_FILE,
        {
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
            "fastdds_profile",
        },
        {
            "SEG_EXECUTABLE": "instrument_seg.ros.segmentation_node:main",
            "EVAL_EXECUTABLE": "instrument_seg.ros.evaluation_node:main",
        },
    ),
}


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def names_in(tree: ast.Module) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


@pytest.mark.parametrize("name", FILES)
class TestLaunchFile:
    def test_declares_the_documented_arguments_with_descriptions(self, name):
        path, documented, _ = FILES[name]
        arguments = next(
            node.value
            for node in ast.walk(parse(path))
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "ARGUMENTS"
        )
        declared = ast.literal_eval(arguments)  # a literal table: nothing computed
        assert set(declared) == documented == set(paths.load_launch_module(path).ARGUMENTS)
        for argument, (default, description) in declared.items():
            assert isinstance(default, str), argument
            assert len(description.split()) >= 4, argument

    def test_nothing_is_evaluated(self, name):
        for tree in (parse(FILES[name][0]), parse(PLAN_FILE)):
            attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
            assert not {"eval", "exec", "PythonExpression", "compile"} & (
                names_in(tree) | attributes
            )

    def test_executables_are_console_scripts(self, name):
        path, _, executables = FILES[name]
        launch = paths.load_launch_module(path)
        scripts = {
            ep.name: ep.value
            for ep in importlib.metadata.distribution(launch_plan.PACKAGE).entry_points
            if ep.group == "console_scripts"
        }
        for constant, target in executables.items():
            assert scripts[getattr(launch, constant)] == target

    def test_imports_no_launch_machinery(self, name):
        """Loading the file (as ``ros2 launch`` and the tests do) imports launch_plan, and
        neither launch, launch_ros, rclpy nor the model stack."""
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[2]); import ros_paths; "
            "from pathlib import Path; ros_paths.load_launch_module(Path(sys.argv[1])); "
            "print(json.dumps(sorted(sys.modules)))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(FILES[name][0]), str(Path(paths.__file__).parent)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        modules = json.loads(out.stdout.strip().splitlines()[-1])
        assert "instrument_seg.ros.launch_plan" in modules
        roots = {m.split(".")[0] for m in modules}
        assert not roots & {"launch", "launch_ros", "rclpy", "ament_index_python", "numpy"}


class TestLaunchPlanSource:
    def test_arguments_are_declared_with_default_and_description(self):
        calls = [
            node
            for node in ast.walk(parse(PLAN_FILE))
            if isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "DeclareLaunchArgument"
        ]
        assert calls, "no DeclareLaunchArgument"
        for call in calls:
            assert {"default_value", "description"} <= {k.arg for k in call.keywords}

    def test_parameters_default_to_the_installed_configs(self):
        assert "get_package_share_directory" in names_in(parse(PLAN_FILE))
        seg = paths.load_launch_module(paths.LAUNCH_FILE)
        ev = paths.load_launch_module(paths.EVAL_LAUNCH_FILE)
        assert seg.CONFIG == ev.SEG_CONFIG == ("config", "seg.yaml")
        assert ev.EVAL_CONFIG == ("config", "eval.yaml")
        for config in (seg.CONFIG, ev.EVAL_CONFIG):
            assert (paths.REPO / "/".join(config)).is_file()
        assert launch_plan.PACKAGE == "instrument_seg"

    def test_a_node_can_end_the_launch(self):
        assert {"OnProcessExit", "Shutdown", "EmitEvent", "RegisterEventHandler"} <= names_in(
            parse(PLAN_FILE)
        )


class TestHelpers:
    def test_argument_values(self):
        arguments = {"a": ("x", "first"), "b": ("", "second")}
        assert launch_plan.argument_values({"a": " y "}, arguments) == {"a": "y", "b": ""}
        assert launch_plan.clean_namespace(" /rig/ ") == "/rig"

    @pytest.mark.parametrize(
        ("text", "value"),
        [("true", True), ("True", True), ("1", True), ("on", True), ("no", False), ("", False)],
    )
    def test_as_bool(self, text, value):
        assert launch_plan.as_bool("stereo", text) is value

    def test_bad_values_name_the_argument(self):
        for call, words in (
            (lambda: launch_plan.as_bool("stereo", "maybe"), "stereo must be true or false"),
            (lambda: launch_plan.as_int("threads", "1.5"), "threads must be an integer"),
            (lambda: launch_plan.as_float("rate", "ten"), "rate must be a number, got 'ten'"),
            (lambda: launch_plan.as_choice("pace", "x", ("a", "b")), "pace must be one of a, b"),
        ):
            with pytest.raises(ValueError, match=words):
                call()
        assert launch_plan.as_int("threads", "2") == 2
        assert launch_plan.as_float("rate", "15") == 15.0

    def test_node_plan(self):
        plan = launch_plan.node_plan("evaluation_node", "/ns", "/p.yaml", {"a": 1}, [("x", "y")])
        assert plan == {
            "name": "evaluation_node",
            "executable": "evaluation_node",
            "namespace": "/ns",
            "remappings": [("x", "y")],
            "parameters": ["/p.yaml", {"a": 1}],
            "env": {},
        }

    def test_profile_env(self):
        var = "FASTDDS_DEFAULT_PROFILES_FILE"
        assert launch_plan.profile_env("", "/share/p.xml", {}) == {var: "/share/p.xml"}
        assert launch_plan.profile_env("/mine.xml", "/share/p.xml", {}) == {var: "/mine.xml"}
        for user in (var, "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS"):
            assert launch_plan.profile_env("", "/share/p.xml", {user: "x"}) == {}
        assert launch_plan.profile_env("", "", {}) == {}


@pytest.mark.skipif(
    importlib.util.find_spec("launch_ros") is None, reason="launch_ros is not installed here"
)
@pytest.mark.parametrize("name", FILES)
def test_generate_launch_description(name):
    from launch.actions import DeclareLaunchArgument

    path, documented, _ = FILES[name]
    description = paths.load_launch_module(path).generate_launch_description()
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert {a.name for a in declared} == documented
    assert all(a.description for a in declared)
