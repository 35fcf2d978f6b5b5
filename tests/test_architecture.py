"""The package's shape: one-way dependencies between subpackages, no import cycles, small files.

Imports are read from the source with :mod:`ast` (lazy imports inside functions included), so
the checks hold for every code path, not only for what one test run happens to import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "instrument_seg"
NAME = "instrument_seg"

#: Rank of every part of the package: a module may import only from parts of lower or equal
#: rank (data and the bottom modules below everything, ros/ and cli/ on top).
RANKS = {
    "": 0,  # errors, fileio, config, imaging, imagemsg, the package's __init__
    "data": 1,
    "model": 2,
    "cues": 3,
    "inference": 4,
    "evaluation": 5,
    "training": 6,
    "ros": 7,
    "cli": 7,
}
MAX_TOP_LEVEL_MODULES = 8
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, module: str) -> set[str]:
    """The package's modules that ``path`` imports (absolute and relative, at any depth)."""
    tree = ast.parse(path.read_text(), str(path))
    known = _modules()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not path.name == "__init__.py":
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] != NAME:
                continue
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known and name != module:
                found.add(name)
    return found


def _part(module: str) -> str:
    if module == f"{NAME}.__main__":  # ``python -m instrument_seg``: the CLI's entry point
        return "cli"
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    sub = parts[1]
    return sub if (PACKAGE / sub).is_dir() else ""


class TestLayout:
    def test_at_most_eight_top_level_modules(self):
        top = sorted(p.name for p in PACKAGE.glob("*.py"))
        assert len(top) <= MAX_TOP_LEVEL_MODULES, top

    def test_every_subpackage_has_a_rank(self):
        subs = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
        assert subs - {"_defaults"} <= set(RANKS), subs - set(RANKS)

    @pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
    def test_no_source_file_over_600_lines(self, path):
        n = len(path.read_text().splitlines())
        assert n <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {n} lines"


class TestDependencies:
    def test_dependencies_point_one_way(self):
        wrong = []
        for module, path in _modules().items():
            mine = RANKS[_part(module)]
            for target in _imports(path, module):
                theirs = RANKS[_part(target)]
                if theirs > mine:
                    wrong.append(f"{module} -> {target}")
        assert not wrong, wrong

    def test_only_ros_imports_ros(self):
        ros_roots = ("rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "rcl_interfaces")
        wrong = []
        for module, path in _modules().items():
            if _part(module) == "ros":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                wrong += [f"{module} -> {n}" for n in names if n.split(".")[0] in ros_roots]
        assert not wrong, wrong

    def test_deployment_path_never_reaches_training_cues_or_evaluation(self):
        """Every import of inference/ and the segmentation node (with the ros/ modules only it
        uses), lazy ones included: the node configured with any parameter (e.g. the overlay)
        still needs nothing of training, cues, evaluation or the CLI (the subprocess test sees
        only one configuration)."""
        banned = tuple(f"{NAME}.{part}" for part in ("training", "cues", "evaluation", "cli"))
        node = {f"{NAME}.ros.{m}" for m in ("segmentation_node", "segmentation_status")}
        deployed = [m for m in _modules() if m.startswith(f"{NAME}.inference") or m in node]
        wrong = [
            f"{module} -> {target}"
            for module in deployed
            for target in _imports(_modules()[module], module)
            if target.startswith(banned)
        ]
        assert not wrong, wrong

    def test_onnx_and_tensorrt_paths_never_import_the_training_stack(self):
        """Every import (lazy ones included) of the modules that load and run an ONNX model
        or a TensorRT engine, and build one: no torch (the TensorRT backend's GPU memory comes
        from cuda-python), SciPy, scikit-image or matplotlib. The subprocess probes of
        tests/inference/test_deployment_imports.py see only the paths one machine takes."""
        heavy = ("torch", "torchvision", "scipy", "skimage", "matplotlib")
        deployed = [
            f"{NAME}.inference.{name}"
            for name in (
                "base", "contract", "cuda_runtime", "engine", "onnxruntime_backend",
                "preprocess", "segmenter", "tensorrt_backend",
            )
        ] + [f"{NAME}.{name}" for name in ("imagemsg", "imaging", "errors", "fileio")]  # fmt: skip
        wrong = []
        for module in deployed:
            for node in ast.walk(ast.parse(_modules()[module].read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                wrong += [f"{module} -> {n}" for n in names if n.split(".")[0] in heavy]
        assert not wrong, wrong

    def test_no_import_cycles(self):
        graph = {m: _imports(p, m) for m, p in _modules().items()}
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        cycles = []

        def visit(v: str) -> None:  # Tarjan's strongly connected components
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            for w in graph[v]:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))

        for v in graph:
            if v not in index:
                visit(v)
        assert not cycles, cycles

    def test_the_checker_sees_a_violation(self, tmp_path):
        """The import reader resolves relative and lazy imports (else the checks prove nothing)."""
        fake = PACKAGE / "inference" / "segmenter.py"
        source = "def f():\n    from instrument_seg.training.loop import train\n"
        probe = tmp_path / "probe.py"
        probe.write_text(source)
        found = _imports(probe, "instrument_seg.inference.probe")
        assert "instrument_seg.training.loop" in found
        assert "instrument_seg.inference.segmenter" in _imports(fake.parent / "__init__.py",
                                                               "instrument_seg.inference")
