"""The checkpoint format: what ``checkpoint.pt`` holds, writing it and reading it back.

A checkpoint carries the weights, the preprocessing contract (:mod:`instrument_seg.model.contract`:
input size, normalisation), the training split and the resolved config, so a run directory (or
the ``.pt`` file alone) is enough to run, export or resume the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from instrument_seg.config import inference_size, working_size
from instrument_seg.errors import InputError
from instrument_seg.fileio import atomic_path
from instrument_seg.model.contract import (
    CHANNEL_ORDER,
    CHECKPOINT,
    CHECKPOINT_FORMAT,
)
from instrument_seg.model.network import build_model, model_kwargs_from_config, normalization


def model_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The network's constructor arguments from the ``model`` config section (stored in the
    checkpoint; see :func:`instrument_seg.model.network.model_kwargs_from_config`)."""
    return model_kwargs_from_config(config["model"])


def checkpoint_payload(
    model: torch.nn.Module,
    config: Mapping[str, Any],
    *,
    step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    setting: str = "ss",
    fold: int | None = None,
    train_sequences: Sequence[str] = (),
    test_sequences: Sequence[str] = (),
) -> dict[str, Any]:
    """The checkpoint of ``model`` (what ``checkpoint.pt`` holds and :func:`load_checkpoint`
    reads): weights, the preprocessing contract (training size = ``data.size``; the size it
    runs at = ``model.inference_scale`` times that; normalisation),
    the split and the resolved config; the optimizer's state too when given (for resuming)."""
    kwargs = model_kwargs(config)
    mean, std = normalization(kwargs)  # the encoder's pretraining (ImageNet's for the U-Net)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_kwargs": kwargs,
        "input_size": list(working_size(config)),
        "inference_size": list(inference_size(config)),
        "normalization": {"mean": list(mean), "std": list(std), "channels": CHANNEL_ORDER},
        "setting": setting,
        "fold": fold,
        "train_sequences": list(train_sequences),
        "test_sequences": list(test_sequences),
        "config": config,
        "model": model.state_dict(),
        "step": step,
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    return payload


def save_checkpoint(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Writes a checkpoint atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a run directory's (or a file's) checkpoint.

    Raises:
        InputError: missing file, unreadable file, or not an instrument_seg checkpoint.
    """
    path = Path(path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"no checkpoint at {file} (expected a run directory or a .pt file)")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise InputError(f"checkpoint {file} cannot be read ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{file} is not an instrument_seg checkpoint")
    payload["path"] = str(file)
    return payload


def model_from_checkpoint(payload: Mapping[str, Any]) -> torch.nn.Module:
    """The network of a loaded checkpoint, weights loaded, in eval mode (the encoder's
    ImageNet weights are not read again: the checkpoint holds the fine-tuned ones)."""
    model = build_model(payload["model_kwargs"], pretrained=False)
    model.load_state_dict(payload["model"])
    return model.eval()
