"""Running ``instrument-seg`` as a user does (a subprocess), shared by every test directory.

Importable as ``cli_support`` from any test: pytest's "prepend" import mode puts ``tests/``
(the directory of the root ``conftest.py``) on ``sys.path``.
"""

from __future__ import annotations

import os
import subprocess
import sys

#: One OpenMP thread per CLI process: on the shared 2-core machine, two threads under load make
#: small convolutions 10-30x slower (results are unaffected).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(
    *args: object, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Runs ``python -m instrument_seg ARGS`` (each arg through ``str``), capturing its output.

    Args:
        args: the command line after ``instrument-seg``.
        check: raise ``AssertionError`` (with stdout and stderr) on a non-zero exit.
        timeout: seconds before the process is killed.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "instrument_seg", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_one_sentence_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """Asserts exit status 2, no traceback and exactly one ``error: `` line holding ``words``.

    Returns:
        That line.
    """
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]
