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

    def test_rows_are_complete(self, node):
        table = TABLES[node][0]
        assert len({p.name for p in table}) == len(table)
        for p in table:
            assert len(p.description.split()) >= 4, p.name
            assert p.default in p.choices or not p.choices, p.name
            if p.minimum is not None or p.minimum_note:
                assert isinstance(p.default, int) and p.default >= p.minimum, p.name
            if p.positive:
                assert isinstance(p.default, float) and p.default > 0, p.name
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
            input_qos="sensor_data",
            output_qos="reliable",
            transport="raw",
            queue_depth=5,
            max_pixels=4096 * 4096,
            publish_overlay=True,
            threads=0,
            diagnostics_period=1.0,
            autostart=True,
            warning_period=5.0,
        )

    def test_rep_2003_defaults(self):
        """Subscriptions best effort (they match every publisher), publishers reliable; the
        evaluation node follows the same rule."""
        seg = params.defaults(params.SEGMENTATION)
        ev = params.defaults(params.EVALUATION)
        assert (seg["input_qos"], seg["output_qos"]) == ("sensor_data", "reliable")
        assert (ev["input_qos"], ev["output_qos"]) == ("sensor_data", "reliable")

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
                "parameter input_qos is 'fastest'; use one of reliable, sensor_data",
            ),
            ({"output_qos": "x"}, "parameter output_qos is 'x'; use one of reliable, sensor"),
            ({"transport": "theora"}, "parameter transport is 'theora'; use one of raw, compr"),
            ({"input_size": [0, 40]}, "parameter input_size is [0, 40]; use [H, W] or [0, 0]"),
            ({"input_size": [32]}, "parameter input_size is [32]"),
            ({"queue_depth": 0}, "parameter queue_depth is 0; use 1 or more"),
            ({"max_pixels": 0}, "parameter max_pixels is 0; use 1 or more"),
            ({"threads": -1}, "parameter threads is -1; use 0 (default) or more"),
            ({"diagnostics_period": 0.0}, "parameter diagnostics_period is 0.0; it must be pos"),
            ({"warning_period": math.inf}, "parameter warning_period is inf; it must be posit"),
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
            ({"pace": "fixed", "rate": 0.0}, "needs a rate > 0"),
            ({"rate": "fast"}, "rate is 'fast'; it must be a number"),
            ({"mask_timeout": -1.0}, "mask_timeout is -1.0"),
            ({"startup_timeout": math.nan}, "startup_timeout is nan; it must be positive"),
            ({"output_dir": " "}, "output_dir is empty"),
            ({"max_frames": -1}, "max_frames is -1; use 0 (all) or more"),
            ({"queue_depth": 0}, "queue_depth is 0; use 1 or more"),
            ({"input_qos": "fast"}, "input_qos is 'fast'; use one of reliable, sensor_data"),
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
        from rclpy.exceptions import ParameterException
        from rclpy.parameter import Parameter

        node = make_node("declare_seg", {"threshold": 0.5})
        params.declare(node, params.SEGMENTATION)
        assert params.values_of(node, params.SEGMENTATION)["threshold"] == 0.5
        (result,) = node.set_parameters([Parameter("input_qos", value="reliable")])
        assert not result.successful  # read-only: restart the node to change it
        with pytest.raises(ParameterException):
            params.declare(
                make_node("declare_bad", {"queue_depth": "deep"}), params.SEGMENTATION
            )
