"""Every command checks every path before any work: exit 2, one sentence naming the path, and
nothing written (the CLI run as a subprocess on generated data).

The model given to ``evaluate``/``predict``/``export``/``bench`` is an existing folder without a
checkpoint: loading it would fail with "no checkpoint", so an error about another path proves
that the paths were checked before the model was loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_support import assert_one_sentence_error, run_cli

#: {name} placeholders: data (a generated dataset), file (an existing file), dir (an empty
#: folder), full (a non-empty folder), model (a folder with no checkpoint), missing (a path
#: that does not exist), root (the workspace).
CASES = {
    # cues
    "cues --figures FILE": (
        ["cues", "--data", "{data}", "--json", "{root}/cues.json", "--figures", "{file}"],
        ["figures folder {file}", "is not a directory"],
    ),
    "cues --figures FILE/sub": (
        ["cues", "--data", "{data}", "--figures", "{file}/sub"],
        ["{file}/sub", "{file} is not a directory"],
    ),
    "cues --json DIR": (
        ["cues", "--data", "{data}", "--json", "{dir}"],
        ["JSON report {dir}", "is a directory"],
    ),
    "cues --json MISSING/x.json": (
        ["cues", "--data", "{data}", "--json", "{missing}/cues.json"],
        ["{missing}/cues.json", "directory {missing} does not exist"],
    ),
    "cues --data MISSING": (
        ["cues", "--data", "{missing}", "--json", "{root}/cues.json"],
        ["data path {missing} does not exist"],
    ),
    "cues --config MISSING": (
        ["cues", "--data", "{data}", "--config", "{missing}.yaml", "--json", "{root}/c.json"],
        ["config file {missing}.yaml does not exist"],
    ),
    "cues --config DIR": (
        ["cues", "--data", "{data}", "--config", "{dir}"],
        ["config file {dir}", "is a directory"],
    ),
    # evaluate / predict
    "evaluate --figures FILE": (
        ["evaluate", "--model", "{model}", "--data", "{data}"]
        + ["--json", "{root}/e.json", "--figures", "{file}"],
        ["figures folder {file}", "is not a directory"],
    ),
    "evaluate --json DIR": (
        ["evaluate", "--model", "{model}", "--data", "{data}", "--json", "{dir}"],
        ["JSON report {dir}", "is a directory"],
    ),
    "evaluate --model MISSING": (
        ["evaluate", "--model", "{missing}", "--data", "{data}", "--json", "{root}/e.json"],
        ["model {missing} does not exist"],
    ),
    "evaluate --data MISSING": (
        ["evaluate", "--model", "{model}", "--data", "{missing}", "--json", "{root}/e.json"],
        ["data path {missing} does not exist"],
    ),
    "predict --out FILE": (
        ["predict", "--model", "{model}", "--data", "{data}", "--out", "{file}"],
        ["output directory {file}", "is not a directory"],
    ),
    "predict --model MISSING": (
        ["predict", "--model", "{missing}", "--data", "{data}", "--out", "{root}/pred"],
        ["model {missing} does not exist"],
    ),
    # train / ablate
    "train --out FILE": (
        ["train", "--data", "{data}", "--out", "{file}"],
        ["run directory {file}", "is not a directory"],
    ),
    "train --out FILE/run": (
        ["train", "--data", "{data}", "--out", "{file}/run"],
        ["{file}/run", "{file} is not a directory"],
    ),
    "train --out NON-EMPTY": (
        ["train", "--data", "{data}", "--out", "{full}"],
        ["run directory {full} is not empty", "--resume"],
    ),
    "train --resume EMPTY": (
        ["train", "--data", "{data}", "--out", "{dir}", "--resume"],
        ["cannot resume run directory {dir}", "no checkpoint.pt", "drop --resume"],
    ),
    "train --resume MISSING": (
        ["train", "--data", "{data}", "--out", "{missing}", "--resume"],
        ["cannot resume run directory {missing}", "does not exist"],
    ),
    "train --resume NO-CHECKPOINT": (
        ["train", "--data", "{data}", "--out", "{full}", "--resume"],
        ["cannot resume run directory {full}", "no checkpoint.pt"],
    ),
    "train --data MISSING": (
        ["train", "--data", "{missing}", "--out", "{root}/run"],
        ["data path {missing} does not exist"],
    ),
    "train --config MISSING": (
        ["train", "--data", "{data}", "--out", "{root}/run", "--config", "{missing}.yaml"],
        ["config file {missing}.yaml does not exist"],
    ),
    "ablate --out FILE": (
        ["ablate", "--data", "{data}", "--out", "{file}", "--table", "1"],
        ["ablation folder {file}", "is not a directory"],
    ),
    # export / bench
    "export --onnx DIR": (
        ["export", "--model", "{model}", "--onnx", "{dir}"],
        ["ONNX file {dir}", "is a directory"],
    ),
    "export --onnx MISSING/m.onnx": (
        ["export", "--model", "{model}", "--onnx", "{missing}/m.onnx"],
        ["{missing}/m.onnx", "directory {missing} does not exist"],
    ),
    "export --engine DIR": (
        ["export", "--model", "{model}", "--onnx", "{root}/m.onnx", "--engine", "{dir}"],
        ["engine file {dir}", "is a directory"],
    ),
    "export --model MISSING": (
        ["export", "--model", "{missing}", "--onnx", "{root}/m.onnx"],
        ["model {missing} does not exist"],
    ),
    "bench --json DIR": (
        ["bench", "--model", "{model}", "--json", "{dir}"],
        ["JSON report {dir}", "is a directory"],
    ),
    "bench --torch-model MISSING": (
        ["bench", "--model", "{model}", "--torch-model", "{missing}", "--json", "{root}/b.json"],
        ["baseline model {missing} does not exist"],
    ),
    # synth / bag
    "synth --out FILE": (
        ["synth", "--out", "{file}"],
        ["output directory {file}", "is not a directory"],
    ),
    "synth --out NON-EMPTY": (
        ["synth", "--out", "{full}"],
        ["output directory {full} is not empty"],
    ),
    "bag --out MISSING/bag": (
        ["bag", "--data", "{data}", "--out", "{missing}/bag"],
        ["{missing}/bag", "directory {missing} does not exist"],
    ),
    "bag --out EXISTING": (
        ["bag", "--data", "{data}", "--out", "{file}"],
        ["output bag {file} already exists"],
    ),
    "bag --extract MISSING": (
        ["bag", "--extract", "{missing}", "--out", "{root}/ex"],
        ["bag {missing} does not exist"],
    ),
    "bag --extract --out FILE": (
        ["bag", "--extract", "{dir}", "--out", "{file}"],
        ["output directory {file}", "is not a directory"],
    ),
}

#: {ro} is a folder this process cannot write to.
UNWRITABLE = {
    "cues --json RO/c.json": (
        ["cues", "--data", "{data}", "--json", "{ro}/cues.json"],
        ["{ro}/cues.json", "{ro} is not writable"],
    ),
    "cues --figures RO/figs": (
        ["cues", "--data", "{data}", "--figures", "{ro}/figs/deeper"],
        ["{ro}/figs/deeper", "{ro} is not writable"],
    ),
    "predict --out RO/pred": (
        ["predict", "--model", "{model}", "--data", "{data}", "--out", "{ro}/pred"],
        ["{ro}/pred", "{ro} is not writable"],
    ),
    "train --out RO/run": (
        ["train", "--data", "{data}", "--out", "{ro}/run"],
        ["{ro}/run", "{ro} is not writable"],
    ),
    "export --onnx RO/m.onnx": (
        ["export", "--model", "{model}", "--onnx", "{ro}/m.onnx"],
        ["{ro}/m.onnx", "{ro} is not writable"],
    ),
}


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (hidden temporaries included), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    from instrument_seg.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("paths")
    places = {
        "root": root,
        "data": write_dataset(root / "data", 1, 2, (64, 80), seed=0),
        "file": root / "a_file",
        "dir": root / "a_dir",
        "full": root / "full",
        "model": root / "model_dir",
        "missing": root / "missing",
    }
    places["file"].write_text("not a folder\n")
    for name in ("dir", "full", "model"):
        places[name].mkdir()
    (places["full"] / "something.txt").write_text("x\n")
    return places


@pytest.fixture(scope="module")
def read_only(workspace):
    """A folder ``os.access`` reports as unwritable: a 0o555 one, or (as root, who may write
    anywhere) a read-only mount such as /proc/sys; skips when there is none."""
    folder = workspace["root"] / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if not os.access(folder, os.W_OK):
            yield folder
        elif Path("/proc/sys").is_dir() and not os.access("/proc/sys", os.W_OK):
            yield Path("/proc/sys")
        else:
            pytest.skip("no unwritable folder here (root on a writable file system)")
    finally:
        folder.chmod(0o755)


def _run_case(args: list[str], words: list[str], places: dict[str, Path]) -> None:
    args = [a.format(**places) for a in args]
    words = [w.format(**places) for w in words]
    before = tree(places["root"])
    proc = run_cli(*args, check=False, timeout=120)
    line = assert_one_sentence_error(proc, *words)
    assert proc.stderr.splitlines() == [line], proc.stderr  # no progress bar, no warning
    assert ". " not in line, line  # one sentence
    assert proc.stdout == "", proc.stdout
    assert tree(places["root"]) == before  # nothing written, not even a temporary


class TestPathsCheckedBeforeWork:
    @pytest.mark.parametrize("case", sorted(CASES))
    def test_bad_path(self, workspace, case):
        args, words = CASES[case]
        _run_case(args, words, workspace)

    @pytest.mark.parametrize("case", sorted(UNWRITABLE))
    def test_unwritable_place(self, workspace, read_only, case):
        args, words = UNWRITABLE[case]
        places = {**workspace, "ro": read_only}
        _run_case(args, words, places)
        for arg in args:
            if arg.startswith("{ro}/"):
                assert not Path(arg.format(**places)).exists()

    def test_measured_bug_cues_json_not_written(self, workspace):
        """Was: cues.json written, then a FileExistsError traceback (exit 1) on --figures."""
        report = workspace["root"] / "cues.json"
        proc = run_cli(
            "cues", "--data", workspace["data"], "--json", report, "--figures",
            workspace["file"], check=False,
        )  # fmt: skip
        assert_one_sentence_error(proc, str(workspace["file"]))
        assert not report.exists()


class TestFolderOutputsStillCreateParents:
    def test_synth_into_missing_parents(self, tmp_path):
        """``make demo`` starts with ``synth --out demo_out/data`` before demo_out exists."""
        out = tmp_path / "a" / "b" / "data"
        proc = run_cli("synth", "--out", out, "--sequences", 1, "--frames", 1, "--size", "64x80")
        assert proc.stdout.splitlines()[-1].endswith(f"with masks to {out}")
        assert (out / "seq_00" / "images").is_dir()
