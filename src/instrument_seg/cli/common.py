"""What the command modules share: argument types, option groups and the progress bar."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' is not of the form HxW") from None
    return h, w


def progress_bar(total: int, desc: str, unit: str = "frame") -> tqdm:
    """A tqdm bar on stderr, shown only on a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr)


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--device`` of the commands that run a model."""
    from instrument_seg.inference.base import BACKENDS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: .engine -> tensorrt (else its ONNX on onnxruntime), .onnx -> onnxruntime, "
        "run dir/.pt -> torch",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config YAML`` (repeatable) and trailing ``key=value`` overrides."""
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="experiment YAML overriding the defaults (config/train.yaml); may repeat",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides applied last, e.g. cues.enabled=[color,objectness]",
    )
