"""The preprocessing contract of a model: what every backend needs to turn frames into input.

A checkpoint carries it in its ``input_size``, ``normalization`` and ``config`` entries; an
exported ONNX file carries the same facts as model metadata (``metadata_props``, one JSON value
per key), so an ``.onnx`` or ``.engine`` file is usable without the checkpoint it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instrument_seg.config import complete_config
from instrument_seg.errors import InputError
from instrument_seg.model.contract import CHANNEL_ORDER, NORM_MEAN, NORM_STD

ONNX_FORMAT = "instrument_seg.onnx/1"
LAYOUT = "NCHW"
INPUT_NAME = "input"
OUTPUT_NAME = "prob"
PRECISIONS = ("fp32", "fp16")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _threshold_of(config: Mapping[str, Any] | None) -> dict[str, Any]:
    t = (config or {}).get("threshold") or {}
    return {
        "method": str(t.get("method", "otsu")),
        "value": float(t.get("value", 0.6)),
        "min_area": float(t.get("min_area", 10000)),
    }


def _stored_field_of_view(config: Mapping[str, Any] | None) -> bool:
    """``data.field_of_view`` as the model's own config stored it (absent: False, as before)."""
    data = (config or {}).get("data") or {}
    return bool(data.get("field_of_view", False))


@dataclass(frozen=True)
class ModelContract:
    """How frames become the network's input and what its output means.

    Attributes:
        input_size: (H, W) the network runs at; frames are resized to it (area interpolation).
        mean: per-channel mean subtracted after scaling uint8 to [0, 1], in channel order.
        std: per-channel standard deviation divided by after the mean.
        channel_order: ``RGB``.
        threshold: the model's default threshold, keyword arguments of ``imaging.binarize``.
        model_kwargs: the U-Net's constructor arguments (width, depth, bilinear).
        checkpoint: file name of the checkpoint the model came from (``checkpoint.pt``): no
            folder, so an exported file does not carry the exporting machine's paths (files
            exported before this read back with the absolute path they recorded).
        checkpoint_sha256: SHA-256 of that checkpoint file, which identifies it.
        setting: ``ss`` or ``tt`` (training setting), when known.
        fold: TT fold, when known.
        test_sequences: the run's held-out sequences.
        config: the resolved training config, when known.
        precision: ``fp32`` or ``fp16`` (arithmetic inside an exported graph).
        field_of_view: mask the endoscope's black border: P and the mask are 0 outside the
            field of view detected in each frame (``data.field_of_view`` at training time;
            models from before it existed: False).
    """

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = CHANNEL_ORDER
    threshold: dict[str, Any] = field(default_factory=lambda: _threshold_of(None))
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    setting: str | None = None
    fold: int | None = None
    test_sequences: tuple[str, ...] = ()
    config: dict[str, Any] | None = None
    precision: str = "fp32"
    field_of_view: bool = False

    @classmethod
    def from_checkpoint(
        cls, payload: Mapping[str, Any], input_size: tuple[int, int] | None = None
    ) -> ModelContract:
        """The contract of a loaded checkpoint (see ``model.checkpoint.load_checkpoint``).

        Args:
            payload: the checkpoint dictionary; its ``path`` entry names the file.
            input_size: (H, W) to run at instead of the checkpoint's inference size.
        """
        norm = payload.get("normalization") or {}

        path = payload.get("path")
        # the size it runs at (model.inference_scale x data.size); older checkpoints: the
        # training size
        size = input_size or tuple(payload.get("inference_size") or payload["input_size"])
        return cls(
            input_size=(int(size[0]), int(size[1])),
            mean=tuple(float(v) for v in norm.get("mean", NORM_MEAN)),
            std=tuple(float(v) for v in norm.get("std", NORM_STD)),
            channel_order=str(norm.get("channels", CHANNEL_ORDER)),
            threshold=_threshold_of(payload.get("config")),
            model_kwargs=dict(payload.get("model_kwargs") or {}),
            checkpoint=Path(path).name if path else None,
            checkpoint_sha256=sha256_file(path) if path and Path(path).is_file() else None,
            setting=payload.get("setting"),
            fold=payload.get("fold"),
            test_sequences=tuple(payload.get("test_sequences") or ()),
            config=complete_config(payload.get("config")),
            field_of_view=_stored_field_of_view(payload.get("config")),
        )

    def with_precision(self, precision: str) -> ModelContract:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got '{precision}'")
        return ModelContract(**{**self.__dict__, "precision": precision})

    def to_metadata(self) -> dict[str, str]:
        """The contract as ONNX ``metadata_props`` (string keys, JSON string values)."""
        values = {
            "format": ONNX_FORMAT,
            "input_size": list(self.input_size),
            "channel_order": self.channel_order,
            "layout": LAYOUT,
            "norm_mean": list(self.mean),
            "norm_std": list(self.std),
            "threshold": self.threshold,
            "output": "P(instrument) per pixel, float32 (N, 1, H, W) in [0, 1]",
            "model_kwargs": self.model_kwargs,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "setting": self.setting,
            "fold": self.fold,
            "test_sequences": list(self.test_sequences),
            "config": self.config,
            "precision": self.precision,
            "encoder": str(self.model_kwargs.get("encoder", "unet")),
            "field_of_view": self.field_of_view,
        }
        return {k: v if k == "format" else json.dumps(v) for k, v in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str | Path) -> ModelContract:
        """Reads the contract back from ONNX metadata.

        Raises:
            InputError: ``source`` was not exported by instrument_seg, or its metadata is bad.
        """
        if metadata.get("format") != ONNX_FORMAT:
            raise InputError(
                f"{source} carries no instrument_seg metadata (format "
                f"'{metadata.get('format')}'); export it with 'instrument-seg export'"
            )
        try:
            v = {k: json.loads(s) for k, s in metadata.items() if k != "format"}
            size, mean, std = v["input_size"], v["norm_mean"], v["norm_std"]
            if len(size) != 2 or len(mean) != 3 or len(std) != 3:
                raise ValueError("input_size needs 2 values, norm_mean and norm_std 3")
            return cls(
                input_size=(int(size[0]), int(size[1])),
                mean=tuple(float(x) for x in mean),
                std=tuple(float(x) for x in std),
                channel_order=str(v.get("channel_order", CHANNEL_ORDER)),
                threshold=_threshold_of({"threshold": v.get("threshold")}),
                model_kwargs=dict(v.get("model_kwargs") or {}),
                checkpoint=v.get("checkpoint"),
                checkpoint_sha256=v.get("checkpoint_sha256"),
                setting=v.get("setting"),
                fold=v.get("fold"),
                test_sequences=tuple(v.get("test_sequences") or ()),
                config=complete_config(v.get("config")),
                precision=str(v.get("precision", "fp32")),
                field_of_view=bool(v.get("field_of_view", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source} has unreadable instrument_seg metadata ({exc})") from exc
