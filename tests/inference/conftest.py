"""Fixtures of the inference tests: a tiny fitted run and its ONNX exports."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference import support as tiny


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on the shared 2-core machine, two OpenMP threads under load make
    small convolutions 10-30x slower (results are unaffected)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run directory with a fitted width-4, depth-2 U-Net at 64x80."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return tiny.write_run(tmp_path_factory.mktemp("tiny") / "run")
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run) -> Path:
    """``tiny_run`` exported with a dynamic batch."""
    from instrument_seg.inference.export import export

    return export(tiny_run, tiny_run / "model.onnx", dynamic=True).onnx


@pytest.fixture(scope="session")
def tiny_onnx_static(tiny_run) -> Path:
    """``tiny_run`` exported with batch 1."""
    from instrument_seg.inference.export import export

    return export(tiny_run, tiny_run / "static.onnx").onnx
