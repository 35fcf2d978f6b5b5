"""instrument_seg.ros.params: the tables, the YAML files and docs that list them, validation,
and the declaration on a real rclpy node.

Everything but :class:`TestDeclare` runs without rclpy: the module is plain Python.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import ros_paths as paths
import yaml

from instrument_seg.errors import InputError
from instrument_seg.ros import params

TABLES = {
    "segmentation_node": (params.SEGMENTATION, paths.SEG_YAML, "ros.md", "\n## Parameters\n"),
    "evaluation_node": (params.EVALUATION, paths.EVAL_YAML, "evaluation.md", "\n### Parameters\n"),
}


def seg_values(**changes) -> dict:
    return {**params.defaults(params.SEGMENTATION), "model_path": "/m.onnx", **changes}


def eval_values(**changes) -> dict:
    return {**params.defaults(params.EVALUATION), "bag_path": "/b", **changes}


@pytest.mark.parametrize("node", TABLES)
class TestTables:
    def test_yaml_lists_every_parameter_with_its_default(self, node):
        table, yaml_path, _, _ = TABLES[node]
        data = yaml.safe_load(yaml_path.read_text())
        assert list(data) == ["/**"]
        assert data["/**"]["ros__parameters"] == params.defaults(table)
        assert list(data["/**"]["ros__parameters"]) == [p.name for p in table]  # same order

    def test_docs_table_lists_every_parameter_with_its_default(self, node):
        table, _, doc, heading = TABLES[node]
        docs = (paths.REPO / "docs" / doc).read_text()
        section = docs.split(heading, 1)[1].split("\n## ", 1)[0]
        rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, flags=re.M))
        assert set(rows) == {p.name for p in table}
        for p in table:
            assert yaml.safe_load(rows[p.name]) == p.default, p.name
        lines = {m[0]: m[1] for m in re.findall(r"^\| `(\w+)` \|(.*)$", section, flags=re.M)}
        for p in table:  # every number's range is in its row
            if p.maximum is not None:
                bounds = (p.minimum, p.maximum)
                words = [str(v) if isinstance(v, int) else f"{v:g}" for v in bounds]
                assert f"{words[0]} to {words[1]}" in lines[p.name] or (
                    p.minimum == 0 and f"at most {words[1]}" in lines[p.name]
                ), p.name

    def test_rows_are_complete(self, node):
        table = TABLES[node][0]
        assert len({p.name for p in table}) == len(table)
        for p in table:
            assert len(p.description.split()) >= 4, p.name
            assert p.default in p.choices or not p.choices, p.name
            if isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
                # every number has a range, and its default lies in it
                assert p.minimum is not None and p.maximum is not None, p.name
                assert p.minimum <= p.default <= p.maximum, p.name
        # the defaults themselves are valid (model_path / bag_path aside: required)
        assert params.checked(table, {**params.defaults(table), "model_path": "m"})


def test_backends_are_the_inference_packages():
    from instrument_seg.inference import BACKENDS

    assert params.BACKENDS == BACKENDS


def test_importing_params_loads_no_ros_and_no_model_stack():
    code = "import json, sys, instrument_seg.ros.params; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    roots = {m.split(".")[0] for m in modules}
    assert not roots & {"rclpy", "rcl_interfaces", "numpy", "cv2", "torch", "launch"}
    assert "instrument_seg.inference" not in modules


class TestSegmentationSettings:
    def test_defaults(self):
        s = params.segmentation_settings(seg_values(model_path=" /m.onnx "))
        assert s == params.SegmentationSettings(
            model_path="/m.onnx",
            backend="auto",
            input_size=None,
            threshold=None,
            input_qos="auto",
            output_qos="reliable",
            transport="raw",
            queue_depth=5,
            max_pixels=3840 * 2160,
            publish_overlay=True,
            threads=0,
            diagnostics_period=1.0,
            autostart=True,
            warning_period=5.0,
        )

    def test_qos_defaults(self):
        """Subscriptions adapt to the publishers (auto: best effort until every publisher is
        known to be reliable), publishers reliable (REP-2003); the evaluation node alike."""
        seg = params.defaults(params.SEGMENTATION)
        ev = params.defaults(params.EVALUATION)
        assert (seg["input_qos"], seg["output_qos"]) == ("auto", "reliable")
        assert (ev["input_qos"], ev["output_qos"]) == ("auto", "reliable")
        for table in (params.SEGMENTATION, params.EVALUATION):
            qos = {p.name: p for p in table}
            assert qos["input_qos"].choices == ("auto", "reliable", "sensor_data")
            assert qos["output_qos"].choices == ("reliable", "sensor_data")

    def test_conversions(self):
        s = params.segmentation_settings(
            seg_values(
                input_size=[32, 40],
                threshold=0.25,
                backend="torch",
                input_qos="reliable",
                output_qos="sensor_data",
                transport="compressed",
            )
        )
        assert (s.input_size, s.threshold, s.backend, s.input_qos, s.output_qos) == (
            (32, 40),
            0.25,
            "torch",
            "reliable",
            "sensor_data",
        )
        assert s.transport == "compressed"
        assert params.segmentation_settings(seg_values(threshold=" otsu ")).threshold == "otsu"
        assert params.segmentation_settings(seg_values(threshold="0.5")).threshold == 0.5

    @pytest.mark.parametrize(
        ("change", "words"),
        [
            ({"model_path": " "}, "parameter model_path is empty; set it to a .onnx"),
            ({"backend": "cuda"}, "parameter backend is 'cuda'; use one of auto, tensorrt"),
            (
                {"input_qos": "fastest"},
                "parameter input_qos is 'fastest'; use one of auto, reliable, sensor_data",
            ),
            ({"output_qos": "x"}, "parameter output_qos is 'x'; use one of reliable, sensor"),
            ({"transport": "theora"}, "parameter transport is 'theora'; use one of raw, compr"),
            ({"input_size": [0, 40]}, "parameter input_size is [0, 40]; use [H, W] with H and"),
            ({"input_size": [32]}, "parameter input_size is [32]"),
            ({"input_size": []}, "parameter input_size is []; use [H, W] with H and W from 1"),
            ({"input_size": None}, "parameter input_size is not set"),
            ({"input_size": [8193, 64]}, "parameter input_size is [8193, 64]"),
            ({"queue_depth": 0}, "parameter queue_depth is 0; use 1 to 1000"),
            ({"queue_depth": 2147483648}, "parameter queue_depth is 2147483648; use 1 to 1000"),
            ({"queue_depth": 2**62}, "parameter queue_depth is 4611686018427387904; use 1 to"),
            ({"queue_depth": "deep"}, "parameter queue_depth is 'deep'; it must be an integer"),
            ({"max_pixels": 0}, "parameter max_pixels is 0; use 1 to"),
            ({"threads": -1}, "parameter threads is -1; use 0 (default) to 256"),
            ({"threads": 100000}, "parameter threads is 100000; use 0 (default) to 256"),
            ({"diagnostics_period": 0.0}, "parameter diagnostics_period is 0.0; use 0.1 to 3600"),
            ({"diagnostics_period": 1e-9}, "parameter diagnostics_period is 1e-09; use 0.1 to"),
            ({"diagnostics_period": 1e300}, "parameter diagnostics_period is 1e+300; use 0.1"),
            ({"warning_period": math.inf}, "parameter warning_period is inf; use 0.01 to 3600"),
            ({"publish_overlay": "yes"}, "parameter publish_overlay is 'yes'; it must be true"),
            ({"threshold": "median"}, "parameter threshold is 'median'; use otsu, official"),
            ({"threshold": 1.5}, "parameter threshold is '1.5'"),
        ],
    )
    def test_bad_values(self, change, words):
        with pytest.raises(InputError, match=re.escape(words)):
            params.segmentation_settings(seg_values(**change))


class TestEvaluationSettings:
    def test_defaults_and_strings_from_launch(self):
        s = params.evaluation_settings(eval_values(rate="15", bag_image_topic=" "))
        assert (s.rate, s.bag_image_topic, s.bag_gt_topic, s.output_dir) == (
            15.0,
            None,
            None,
            "evaluation",
        )
        assert params.evaluation_settings(eval_values(mode="listen", bag_path="")).mode == "listen"
        assert params.evaluation_settings(eval_values(mask_timeout=3)).mask_timeout == 3.0

    @pytest.mark.parametrize(
        ("change", "words"),
        [
            ({"bag_path": ""}, "bag_path is empty"),
            ({"mode": "record"}, "mode is 'record'"),
            ({"pace": "fast"}, "pace is 'fast'; use one of lockstep, recorded, fixed"),
            ({"pace": "fixed", "rate": 0.0}, "rate is 0.0; use 0.01 to 1000 Hz"),
            ({"rate": 1e9}, "rate is 1000000000.0; use 0.01 to 1000 Hz"),
            ({"rate": "fast"}, "rate is 'fast'; it must be a number"),
            ({"mask_timeout": -1.0}, "mask_timeout is -1.0; use 0.1 to 3600 s"),
            ({"startup_timeout": math.nan}, "startup_timeout is nan; use 0.1 to 86400 s"),
            ({"idle_timeout": 1e300}, "idle_timeout is 1e+300; use 0.1 to 3600 s"),
            ({"output_dir": " "}, "output_dir is empty"),
            ({"max_frames": -1}, "max_frames is -1; use 0 (all) to 1000000000"),
            ({"queue_depth": 0}, "queue_depth is 0; use 1 to 1000"),
            ({"input_qos": "fast"}, "input_qos is 'fast'; use one of auto, reliable, sensor"),
        ],
    )
    def test_bad_values(self, change, words):
        with pytest.raises(InputError, match=re.escape(words)):
            params.evaluation_settings(eval_values(**change))


class TestDeclare:
    """:func:`params.declare` on a real rclpy node (its own context)."""

    @pytest.fixture
    def make_node(self):
        rclpy = pytest.importorskip("rclpy")
        context = rclpy.Context()
        rclpy.init(context=context)
        nodes = []

        def make(name: str, overrides: dict):
            from rclpy.parameter import Parameter

            node = rclpy.create_node(
                name,
                context=context,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
            )
            nodes.append(node)
            return node

        yield make
        for node in nodes:
            node.destroy_node()
        rclpy.shutdown(context=context)

    def test_descriptors_and_values(self, make_node):
        node = make_node("declare_eval", {"rate": 15, "pace": "fixed", "bag_path": "/b"})
        params.declare(node, params.EVALUATION)
        values = params.values_of(node, params.EVALUATION)
        assert list(values) == [p.name for p in params.EVALUATION]
        assert values["rate"] == 15  # an integer where a double is declared: dynamic typing
        settings = params.evaluation_settings(values)
        assert (settings.rate, settings.pace, settings.bag_path) == (15.0, "fixed", "/b")
        for p in params.EVALUATION:
            (descriptor,) = node.describe_parameters([p.name])
            assert descriptor.description == p.description
            assert descriptor.read_only
            assert descriptor.dynamic_typing == p.dynamic_typing
        (pace,) = node.describe_parameters(["pace"])
        assert pace.additional_constraints == "one of lockstep, recorded, fixed"

    def test_read_only_and_typed(self, make_node):
        from rclpy.parameter import Parameter

        node = make_node("declare_seg", {"threshold": 0.5})
        params.declare(node, params.SEGMENTATION)
        assert params.values_of(node, params.SEGMENTATION)["threshold"] == 0.5
        (result,) = node.set_parameters([Parameter("input_qos", value="reliable")])
        assert not result.successful  # read-only: restart the node to change it

    def test_ranges_in_the_descriptors(self, make_node):
        node = make_node("declare_ranges", {})
        params.declare(node, params.SEGMENTATION)
        (depth,) = node.describe_parameters(["queue_depth"])
        assert (depth.integer_range[0].from_value, depth.integer_range[0].to_value) == (1, 1000)
        assert depth.additional_constraints == "from 1 to 1000"
        (period,) = node.describe_parameters(["diagnostics_period"])
        rng = period.floating_point_range[0]
        assert (rng.from_value, rng.to_value) == (0.1, 3600.0)

    def test_refused_values_are_reported_not_raised(self, make_node):
        """A wrong type or an out-of-range value keeps the default and comes back as one
        sentence naming the parameter, so a lifecycle node comes up and says it on configure."""
        node = make_node(
            "declare_bad",
            {"queue_depth": 2147483648, "threads": "many", "diagnostics_period": 1,
             "warning_period": 1e-9, "max_pixels": 2**62},
        )
        problems = params.declare(node, params.SEGMENTATION)
        assert problems == {
            "queue_depth": "parameter queue_depth is 2147483648; use 1 to 1000",
            "threads": "parameter threads is 'many'; it must be an integer",
            "diagnostics_period": (
                "parameter diagnostics_period is 1, an integer; it must be a double (write 1.0)"
            ),
            "warning_period": "parameter warning_period is 1e-09; use 0.01 to 3600 s",
            "max_pixels": f"parameter max_pixels is {2**62}; use 1 to {params.MAX_PIXELS_LIMIT}",
        }
        assert params.values_of(node, params.SEGMENTATION)["queue_depth"] == 5
        assert params.declare(make_node("declare_good", {"rate": 15}), params.EVALUATION) == {}


class TestUnknown:
    def test_unknown_names(self):
        given = ["foo", "use_sim_time", "queue_dept", "qos_overrides./image.reliability"]
        assert params.unknown_parameters(given, params.SEGMENTATION) == ["foo", "queue_dept"]

    def test_warning_names_them_and_suggests(self):
        text = params.unknown_warning(
            "segmentation_node", ["foo", "queue_dept"], params.SEGMENTATION
        )
        assert text.startswith(
            "ignoring parameter(s) that segmentation_node does not have: foo, queue_dept "
            "(did you mean queue_depth?); its parameters are model_path, backend"
        )
