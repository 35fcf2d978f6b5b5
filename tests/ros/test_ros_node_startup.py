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
        "bad_qos": {"model_path": onnx, "input_qos": "fastest"},
        "bad_threshold": {"model_path": onnx, "threshold": "median"},
        "size_mismatch": {"model_path": onnx, "input_size": [128, 160]},
        "wrong_type": {"model_path": onnx, "queue_depth": "deep"},
        "nan_model": {"model_path": str(tiny_models["nan_onnx"])},  # Otsu refuses a NaN map
        # values that used to fail inside configure/activate without saying which parameter
        "depth_2_31": {"model_path": onnx, "queue_depth": 2147483648},
        "depth_2_62": {"model_path": onnx, "queue_depth": 2**62},
        "period_huge": {"model_path": onnx, "diagnostics_period": 1.0e300},
        "period_tiny": {"model_path": onnx, "diagnostics_period": 1.0e-9},
        "threads_huge": {"model_path": onnx, "threads": 100000},
        "empty_size": {"model_path": onnx, "input_size": []},
    }
    return start_all(cases, tmp_path_factory.mktemp("startup"))


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing_model", ["/nonexistent/dir/model.onnx", "does not exist"]),
        ("corrupt_model", ["corrupt.onnx", "cannot be loaded"]),
        ("empty_model_path", ["model_path is empty"]),
        ("bad_qos", ["input_qos", "fastest", "reliable, sensor_data"]),
        ("bad_threshold", ["threshold", "median"]),
        ("size_mismatch", ["64x80", "input_size is 128x160"]),
        ("wrong_type", ["queue_depth"]),
        ("nan_model", ["nan.onnx", "fails on a blank 64x80 frame", "NaN"]),
        ("depth_2_31", ["parameter queue_depth is 2147483648; use 1 to 1000"]),
        ("depth_2_62", ["parameter queue_depth is 4611686018427387904; use 1 to 1000"]),
        ("period_huge", ["parameter diagnostics_period is 1e+300; use 0.1 to 3600 s"]),
        ("period_tiny", ["parameter diagnostics_period is 1e-09; use 0.1 to 3600 s"]),
        ("threads_huge", ["parameter threads is 100000; use 0 (default) to 256"]),
        ("empty_size", ["parameter input_size is not set"]),
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


def test_torch_checkpoint_runs_at_the_input_size_parameter(tiny_models, tmp_path):
    """A .pt checkpoint on the torch backend with input_size [32, 40] (trained at 64x80)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from instrument_seg.ros.conversions import array_to_image, image_to_array

    ns = "/startup_torch"
    params = {
        "model_path": str(tiny_models["checkpoint"]),
        "backend": "torch",
        "input_size": [32, 40],
        "diagnostics_period": 0.25,
    }
    node = rh.NodeProcess(tmp_path / "torch.log", ns, params)
    probe = rh.Probe("startup_torch_probe")
    try:
        probe.subscribe(f"{ns}/confidence", Image, rh.qos("reliable", 5))
        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        node.wait_ready(probe, f"{ns}/image", f"{ns}/confidence")
        pub = probe.node.create_publisher(Image, f"{ns}/image", rh.qos("reliable", 5))
        header = rh.make_header(1)
        for _ in range(10):
            pub.publish(array_to_image(rh.camera_frame(50, 70), "rgb8", header))
            if probe.wait_for(lambda: probe.by_stamp(f"{ns}/confidence", (1001, 7)), 2.0):
                break
        confidence = probe.by_stamp(f"{ns}/confidence", (1001, 7))
        assert confidence is not None, node.output()
        assert image_to_array(confidence).shape == (50, 70)
        assert probe.wait_for(
            lambda: (
                (probe.latest_diagnostics(f"{ns}/segmentation_node") or {}).get("processed") == "1"
            ),
            10,
        )
        values = probe.latest_diagnostics(f"{ns}/segmentation_node")
        assert (values["backend"], values["input_size"]) == ("torch", "32x40")
    finally:
        probe.close()
        assert node.stop() == 0
