"""A node that cannot start says why in one fatal line and exits non-zero; no traceback."""

from __future__ import annotations

import subprocess

import pytest

pytest.importorskip("rclpy")

import ros_harness as rh  # noqa: E402


def start_all(cases: dict[str, dict], tmp_path) -> dict[str, tuple[int, str]]:
    """Starts every case's node at once (they exit by themselves) and collects the results."""
    nodes = {
        name: rh.NodeProcess(tmp_path / f"{name}.log", f"/startup_{name}", params)
        for name, params in cases.items()
    }
    results = {}
    for name, node in nodes.items():
        try:
            node.proc.wait(90)
        except subprocess.TimeoutExpired:
            node.stop()
            raise AssertionError(f"{name}: node still running:\n{node.output()}") from None
        node._log_handle.close()
        results[name] = (node.proc.returncode, node.output())
    return results


@pytest.fixture(scope="module")
def startup_failures(tiny_models, tmp_path_factory):
    onnx = str(tiny_models["onnx"])
    cases = {
        "missing_model": {"model_path": "/nonexistent/dir/model.onnx"},
        "corrupt_model": {"model_path": str(tiny_models["corrupt_onnx"])},
        "empty_model_path": {},
        "bad_qos": {"model_path": onnx, "qos": "fastest"},
        "bad_threshold": {"model_path": onnx, "threshold": "median"},
        "size_mismatch": {"model_path": onnx, "input_size": [128, 160]},
        "wrong_type": {"model_path": onnx, "queue_depth": "deep"},
    }
    return start_all(cases, tmp_path_factory.mktemp("startup"))


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing_model", ["/nonexistent/dir/model.onnx", "does not exist"]),
        ("corrupt_model", ["corrupt.onnx", "cannot be loaded"]),
        ("empty_model_path", ["model_path is empty"]),
        ("bad_qos", ["qos", "fastest", "reliable, sensor_data"]),
        ("bad_threshold", ["threshold", "median"]),
        ("size_mismatch", ["64x80", "input_size is 128x160"]),
        ("wrong_type", ["queue_depth"]),
    ],
)
def test_one_fatal_line_and_exit_1(startup_failures, case, words):
    status, output = startup_failures[case]
    assert status == 1, output
    fatal = [line for line in output.splitlines() if "[FATAL]" in line]
    assert len(fatal) == 1, output
    assert "cannot start: " in fatal[0]
    for word in words:
        assert word in fatal[0], output
    assert "Traceback" not in output
