"""inference.cuda_runtime: the TensorRT backend's GPU memory through cuda-python, no torch.

Runs against the real cuda-python bindings where they import (without a GPU: the calls fail
with CUDA's own error, named); the copy round trip needs a CUDA device.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from instrument_seg.errors import InputError
from instrument_seg.inference.cuda_runtime import (
    CudaError,
    CudaRuntime,
    DeviceBuffer,
    call,
    parse_device,
)

HAVE_CUDA_PYTHON = importlib.util.find_spec("cuda") is not None and any(
    importlib.util.find_spec(name) is not None for name in ("cuda.bindings", "cuda.cudart")
)
CUDA_PYTHON = pytest.mark.skipif(not HAVE_CUDA_PYTHON, reason="cuda-python is not installed")


def gpus() -> int:
    return CudaRuntime().device_count()[0] if HAVE_CUDA_PYTHON else 0


class TestDevice:
    @pytest.mark.parametrize(("device", "index"), [(None, None), ("cuda", None), ("cuda:1", 1)])
    def test_cuda_devices(self, device, index):
        assert parse_device(device) == index

    @pytest.mark.parametrize("device", ["cpu", "cuda:", "cuda:x", "gpu:0", "cuda:-1"])
    def test_anything_else_refused(self, device):
        with pytest.raises(InputError, match=f"CUDA devices only .* not '{device}'"):
            parse_device(device)


def test_without_cuda_python_one_sentence():
    """Where cuda-python is missing, loading says what to install (no ImportError)."""
    probe = (
        "import sys\n"
        "sys.modules['cuda'] = None\n"
        "from instrument_seg.inference.cuda_runtime import CudaRuntime\n"
        "from instrument_seg.errors import InputError\n"
        "try:\n"
        "    CudaRuntime()\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "needs NVIDIA's cuda-python" in out.stdout and "pip install cuda-python" in out.stdout


@CUDA_PYTHON
class TestBindings:
    def test_call_returns_values_and_names_errors(self):
        cudart = CudaRuntime().cudart
        no_device = cudart.cudaError_t.cudaErrorNoDevice
        name = call(cudart, "cudaGetErrorName", cudart.cudaGetErrorName(no_device))
        assert name == b"cudaErrorNoDevice"
        with pytest.raises(CudaError, match="CUDA call cudaX failed with cudaErrorNoDevice"):
            call(cudart, "cudaX", (no_device,))

    def test_device_count_never_raises(self):
        count, why = CudaRuntime().device_count()
        assert (count > 0 and why is None) or (count == 0 and why.startswith("cudaError"))

    @pytest.mark.skipif(gpus() > 0, reason="needs a machine without a CUDA device")
    def test_no_gpu_named_by_cuda(self):
        with pytest.raises(CudaError, match="cudaMalloc failed with cudaError"):
            CudaRuntime().malloc(64)

    @pytest.mark.skipif(gpus() == 0, reason="needs a CUDA device")
    @pytest.mark.parametrize("dtype", [np.float32, np.float16])
    def test_round_trip_through_device_memory(self, dtype):
        cuda = CudaRuntime()
        cuda.set_device(cuda.current_device())
        stream = cuda.stream_create()
        buffer = DeviceBuffer(cuda)
        try:
            for shape in ((1, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)):
                host = np.random.default_rng(0).random(shape).astype(dtype)
                back = np.empty_like(host)
                pointer = buffer.reserve(host.nbytes)
                cuda.copy_to_device(pointer, host, stream)
                cuda.copy_to_host(back, pointer, stream)
                cuda.synchronize(stream)
                np.testing.assert_array_equal(back, host)
            assert buffer.nbytes == 4 * 3 * 8 * 8 * np.dtype(dtype).itemsize  # grown, kept
            assert isinstance(cuda.device_name(cuda.current_device()), str)
        finally:
            buffer.free()
            cuda.stream_destroy(stream)
        assert buffer.pointer == 0
