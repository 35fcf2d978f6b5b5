"""TensorRT backend: a serialized engine run with the name-based tensor API (TensorRT 10/11).

Device buffers are PyTorch CUDA tensors (no pycuda): the input is copied to the GPU as a tensor,
the output is allocated as one, and their ``data_ptr()`` are bound with ``set_tensor_address``
before ``execute_async_v3`` on PyTorch's current stream.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from instrument_seg.errors import InputError
from instrument_seg.inference.base import import_tensorrt
from instrument_seg.inference.contract import ModelContract
from instrument_seg.inference.engine import RuntimeInfo, ensure_engine, read_sidecar
from instrument_seg.inference.torch_backend import torch_device

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
        InputError: no tensorrt or CUDA, CPU device, missing/unusable engine that cannot be
            rebuilt, an engine whose I/O is not one (N, 3, H, W) input and one output.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str | None = None) -> None:
        trt = import_tensorrt()
        dev = torch_device(device or "cuda")
        if dev.type != "cuda":
            raise InputError(f"the tensorrt backend runs on CUDA devices only, not '{device}'")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        self._dev = torch.device("cuda", index)
        self.device = str(self._dev)
        path = Path(path)
        onnx = None
        if path.suffix.lower() == ".onnx":
            onnx, path = path, path.with_suffix(".engine")
            if not onnx.is_file():
                raise InputError(f"ONNX model {onnx} does not exist")
        elif not path.is_file() and read_sidecar(path) is None:
            raise InputError(f"TensorRT engine {path} does not exist")
        runtime = RuntimeInfo(trt.__version__, torch.cuda.get_device_name(index))
        ensure_engine(path, runtime, onnx=onnx, device_index=index)
        sidecar = read_sidecar(path)
        self.path = str(path)
        self.contract = ModelContract.from_metadata(sidecar["contract"], path)
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(index):
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
        self._in_dtype = self._torch_dtype(self._input)
        self._out_dtype = self._torch_dtype(self._output)

    def _torch_dtype(self, name: str) -> torch.dtype:
        dt = self.engine.get_tensor_dtype(name)
        table = {self._trt.DataType.FLOAT: torch.float32, self._trt.DataType.HALF: torch.float16}
        if dt not in table:
            raise InputError(f"engine {self.path} tensor '{name}' has unsupported type {dt}")
        return table[dt]

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) -> float32 (N, H, W) probabilities (N <= ``max_batch``)."""
        if self.context is None:
            raise RuntimeError("the tensorrt backend is closed")
        with torch.cuda.device(self._dev):
            stream = torch.cuda.current_stream()
            inp = torch.from_numpy(x).to(self._dev, dtype=self._in_dtype).contiguous()
            self.context.set_input_shape(self._input, tuple(inp.shape))
            out_shape = tuple(self.context.get_tensor_shape(self._output))
            out = torch.empty(out_shape, dtype=self._out_dtype, device=self._dev)
            self.context.set_tensor_address(self._input, inp.data_ptr())
            self.context.set_tensor_address(self._output, out.data_ptr())
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to run engine {self.path}")
            prob = out[:, 0].float().cpu().numpy()  # .cpu() waits for the stream
        return prob

    def close(self) -> None:
        self.context = None
        self.engine = None
        self._runtime = None
