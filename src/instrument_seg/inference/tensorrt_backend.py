"""TensorRT backend: a serialized engine run with the name-based tensor API (TensorRT 10/11).

Device memory, the stream and the copies go through NVIDIA's cuda-python
(:mod:`instrument_seg.inference.cuda_runtime`), not PyTorch, so a GPU runtime image needs
TensorRT, cuda-python, ONNX Runtime and OpenCV, and no training stack. Each :meth:`run` copies
the input to a device buffer, binds both buffers with ``set_tensor_address``, enqueues the
engine with ``execute_async_v3`` on the backend's own stream, copies the output back and waits
for the stream. Buffers grow to the largest batch seen and are freed by :meth:`close`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from instrument_seg.errors import InputError
from instrument_seg.inference.base import import_tensorrt
from instrument_seg.inference.contract import ModelContract
from instrument_seg.inference.cuda_runtime import CudaRuntime, DeviceBuffer, parse_device
from instrument_seg.inference.engine import RuntimeInfo, ensure_engine, read_sidecar

log = logging.getLogger(__name__)


class TensorRTBackend:
    """Runs a TensorRT engine built by ``instrument-seg export --engine``.

    Loading checks the engine's sidecar against the running TensorRT version and GPU: a
    mismatch (or a changed ONNX) rebuilds the engine from the ONNX the sidecar names, and
    fails with one sentence if that ONNX is gone. Given an ``.onnx`` file instead, it uses (or
    builds) ``NAME.engine`` next to it.

    Args:
        path: ``.engine`` file, or ``.onnx`` file to build ``NAME.engine`` from.
        device: ``cuda`` or ``cuda:N`` (None: the current CUDA device).

    Raises:
        InputError: no tensorrt, cuda-python or GPU, a CPU device, a missing/unusable engine
            that cannot be rebuilt, an engine whose I/O is not one (N, 3, H, W) input and one
            output.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str | None = None) -> None:
        trt = import_tensorrt()
        index = parse_device(device)
        self._cuda = CudaRuntime()
        count, _ = self._cuda.device_count()
        if index is not None and index >= count:
            raise InputError(f"device '{device}' was asked for but CUDA sees {count} device(s)")
        self._index = index if index is not None else self._cuda.current_device()
        self.device = f"cuda:{self._index}"
        path = Path(path)
        onnx = None
        if path.suffix.lower() == ".onnx":
            onnx, path = path, path.with_suffix(".engine")
            if not onnx.is_file():
                raise InputError(f"ONNX model {onnx} does not exist")
        elif not path.is_file() and read_sidecar(path) is None:
            raise InputError(f"TensorRT engine {path} does not exist")
        runtime = RuntimeInfo(trt.__version__, self._cuda.device_name(self._index))
        ensure_engine(path, runtime, onnx=onnx, device_index=self._index)
        sidecar = read_sidecar(path)
        self.path = str(path)
        self.contract = ModelContract.from_metadata(sidecar["contract"], path)
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._lock = threading.Lock()
        self._cuda.set_device(self._index)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise InputError(
                f"TensorRT {trt.__version__} cannot deserialize engine {path} (corrupt file?)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(f"engine {path} has I/O {names}; expected one input and one output")
        self._input, self._output = inputs[0], outputs[0]
        shape = tuple(self.engine.get_tensor_shape(self._input))
        if len(shape) != 4 or shape[1] != 3 or tuple(shape[2:]) != self.contract.input_size:
            raise InputError(
                f"engine {path} takes input {shape}; expected (N, 3, "
                f"{self.contract.input_size[0]}, {self.contract.input_size[1]})"
            )
        if shape[0] < 0:
            self.max_batch: int | None = int(
                self.engine.get_tensor_profile_shape(self._input, 0)[2][0]
            )
        else:
            self.max_batch = int(shape[0])
        self._in_dtype = self._numpy_dtype(self._input)
        self._out_dtype = self._numpy_dtype(self._output)
        self._stream: Any = self._cuda.stream_create()
        self._in_buf = DeviceBuffer(self._cuda)
        self._out_buf = DeviceBuffer(self._cuda)

    def _numpy_dtype(self, name: str) -> np.dtype:
        dt = self.engine.get_tensor_dtype(name)
        table = {self._trt.DataType.FLOAT: np.float32, self._trt.DataType.HALF: np.float16}
        if dt not in table:
            raise InputError(f"engine {self.path} tensor '{name}' has unsupported type {dt}")
        return np.dtype(table[dt])

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) -> float32 (N, H, W) probabilities (N <= ``max_batch``)."""
        with self._lock:  # one execution context: one run at a time
            if self.context is None:
                raise RuntimeError("the tensorrt backend is closed")
            self._cuda.set_device(self._index)  # the calling thread's current device
            inp = np.ascontiguousarray(x, dtype=self._in_dtype)
            self.context.set_input_shape(self._input, tuple(inp.shape))
            out_shape = tuple(int(v) for v in self.context.get_tensor_shape(self._output))
            out = np.empty(out_shape, self._out_dtype)
            in_ptr = self._in_buf.reserve(inp.nbytes)
            out_ptr = self._out_buf.reserve(out.nbytes)
            self._cuda.copy_to_device(in_ptr, inp, self._stream)
            self.context.set_tensor_address(self._input, in_ptr)
            self.context.set_tensor_address(self._output, out_ptr)
            if not self.context.execute_async_v3(int(self._stream)):
                raise RuntimeError(f"TensorRT failed to run engine {self.path}")
            self._cuda.copy_to_host(out, out_ptr, self._stream)
            self._cuda.synchronize(self._stream)
        return out[:, 0].astype(np.float32)

    def close(self) -> None:
        """Frees the engine, its context, the device buffers and the stream."""
        with self._lock:
            if self.context is None and self.engine is None:
                return
            self.context = None
            self.engine = None
            self._runtime = None
            self._in_buf.free()
            self._out_buf.free()
            if self._stream is not None:
                self._cuda.stream_destroy(self._stream)
                self._stream = None
