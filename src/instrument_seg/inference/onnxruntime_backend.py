"""ONNX Runtime backend: an exported ``.onnx`` file on the CUDA or CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instrument_seg.errors import InputError
from instrument_seg.inference.contract import ModelContract

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"


def choose_providers(device: str | None, available: list[str]) -> tuple[list, str]:
    """Execution providers for ``device`` and the device name they run on.

    ``None`` takes CUDA when onnxruntime offers it, else the CPU; ``cuda[:N]`` requires it.

    Raises:
        InputError: an unknown device, or CUDA asked for but not offered.
    """
    if device is None:
        device = "cuda" if CUDA_EP in available else "cpu"
    if device == "cpu":
        return [CPU_EP], "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise InputError(f"device '{device}' is not cpu, cuda or cuda:N")
        if CUDA_EP not in available:
            raise InputError(
                f"device '{device}' was asked for but onnxruntime offers no "
                f"{CUDA_EP} here (available: {', '.join(available)})"
            )
        return [(CUDA_EP, {"device_id": int(index)}), CPU_EP], f"cuda:{index}"
    raise InputError(f"device '{device}' is not cpu, cuda or cuda:N")


class OnnxRuntimeBackend:
    """Runs an ONNX file exported by ``instrument-seg export``.

    Args:
        path: the ``.onnx`` file; its metadata holds the preprocessing contract.
        device: ``cpu``, ``cuda``, ``cuda:N`` or None (CUDA when available, else CPU).
        threads: intra-op threads (0: onnxruntime's default, one per physical core).

    Raises:
        InputError: missing or unreadable file, no instrument_seg metadata, an input that is
            not (N, 3, H, W) or disagrees with the metadata's input size, bad device.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str | None = None, threads: int = 0) -> None:
        import onnxruntime as ort

        path = Path(path)
        if threads < 0:
            raise InputError(f"threads must be >= 0, got {threads}")
        if not path.is_file():
            raise InputError(f"ONNX model {path} does not exist")
        providers, self.device = choose_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = int(threads)
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise InputError(
                f"{path} cannot be loaded as an ONNX model ({type(exc).__name__}: {first[:120]})"
            ) from exc
        if self.device != "cpu" and CUDA_EP not in session.get_providers():
            if device is not None:  # asked for explicitly: do not run elsewhere silently
                raise InputError(
                    f"onnxruntime could not start {CUDA_EP} for {path} on device '{device}'"
                )
            self.device = "cpu"
        self.path = str(path)
        self.contract = ModelContract.from_metadata(
            session.get_modelmeta().custom_metadata_map, path
        )
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(
                f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; expected 1 and 1"
            )
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1] != 3 or not all(isinstance(v, int) for v in shape[2:]):
            raise InputError(f"{path} takes input of shape {shape}; expected (N, 3, H, W)")
        if tuple(shape[2:]) != self.contract.input_size:
            raise InputError(
                f"{path} takes {shape[2]}x{shape[3]} input but its metadata says "
                f"{self.contract.input_size[0]}x{self.contract.input_size[1]}"
            )
        self.max_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._input, self._output = inputs[0].name, outputs[0].name
        self.providers = session.get_providers()
        self.session = session

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) -> float32 (N, H, W) probabilities."""
        if self.session is None:
            raise RuntimeError("the onnxruntime backend is closed")
        (prob,) = self.session.run([self._output], {self._input: x})
        return np.asarray(prob, dtype=np.float32)[:, 0]

    def close(self) -> None:
        self.session = None
