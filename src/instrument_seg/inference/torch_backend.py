"""PyTorch eager backend: a checkpoint (run directory or ``.pt`` file) on CPU or CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from instrument_seg.errors import InputError
from instrument_seg.inference.contract import ModelContract
from instrument_seg.model.checkpoint import load_checkpoint, model_from_checkpoint


def torch_device(device: str | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` checked."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device '{device}' is not cpu, cuda or cuda:N") from exc
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device '{device}' is not cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device '{device}' was asked for but PyTorch sees no CUDA device")
    return dev


class TorchBackend:
    """Runs the U-Net of a checkpoint with PyTorch (eager, ``inference_mode``).

    Args:
        path: run directory or checkpoint file.
        device: ``cpu``, ``cuda``, ``cuda:N`` or None (CUDA when available).
        input_size: (H, W) to run at instead of the checkpoint's training size (the U-Net is
            fully convolutional; sizes must be multiples of ``2**depth``).
        threads: if > 0, ``torch.set_num_threads(threads)`` (process-wide). On a loaded CPU
            one thread can be many times faster than several (OpenMP threads wait for each
            other at every operator).

    Raises:
        InputError: missing or unreadable checkpoint, bad device or input size.
    """

    name = "torch"
    max_batch = None

    def __init__(
        self,
        path: str | Path,
        device: str | None = None,
        input_size: tuple[int, int] | None = None,
        threads: int = 0,
    ) -> None:
        if threads < 0:
            raise InputError(f"threads must be >= 0, got {threads}")
        payload = load_checkpoint(path)
        self.path = payload["path"]
        self.contract = ModelContract.from_checkpoint(payload, input_size)
        self._device = torch_device(device)
        self.device = str(self._device)
        model = model_from_checkpoint(payload)
        model.check_input(torch.zeros(1, model.in_channels, *self.contract.input_size))
        self.model: torch.nn.Module | None = model.to(self._device)
        if threads:
            torch.set_num_threads(int(threads))

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) -> float32 (N, H, W) probabilities."""
        if self.model is None:
            raise RuntimeError("the torch backend is closed")
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(x).to(self._device))
            return torch.sigmoid(logits)[:, 0].float().cpu().numpy()

    def close(self) -> None:
        self.model = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
