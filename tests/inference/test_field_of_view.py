"""The endoscope's field of view at inference: P and the mask are 0 on the black border."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from support import frames

from instrument_seg.inference import Segmenter
from instrument_seg.model.checkpoint import load_checkpoint


def _bordered(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame inside a black circle (a laparoscope's optics) and the circle."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    circle = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.52 * h) ** 2
    out = rgb.copy()
    out[~circle] = 0
    return out, circle


class TestFieldOfView:
    def test_masked_outside_with_every_backend(self, tiny_run, tiny_onnx):
        rgb, circle = _bordered(frames(1, (96, 160))[0])
        for path in (tiny_run, tiny_onnx):
            with Segmenter.from_path(path, threshold=0.01) as seg:
                assert seg.contract.field_of_view
                mask, prob = seg.predict(rgb)
            # the detected view may reach ~2 px past the circle (the detector's 5x5 blur)
            near = cv2.dilate(circle.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            assert not mask[~near].any() and not prob[~near].any()
            assert mask[circle].any() and (mask[~circle] > 0).mean() < 0.1

    def test_metadata_names_the_encoder_and_the_field_of_view(self, tiny_onnx):
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
        assert meta["encoder"] == '"unet"' and meta["field_of_view"] == "true"

    def test_models_from_before_keep_their_behaviour(self, tiny_run, tmp_path):
        """A checkpoint whose stored config has no data.field_of_view masks nothing."""
        payload = load_checkpoint(tiny_run)
        del payload["config"]["data"]["field_of_view"]
        payload.pop("path")
        torch.save(payload, tmp_path / "old.pt")
        rgb, circle = _bordered(frames(1, (96, 160))[0])
        with Segmenter.from_path(tmp_path / "old.pt", threshold=0.01) as seg:
            assert not seg.contract.field_of_view
            _, prob = seg.predict(rgb)
        assert prob[~circle].max() > 0

    def test_frames_without_a_border_are_untouched(self, tiny_run, tmp_path):
        payload = load_checkpoint(tiny_run)
        payload["config"]["data"]["field_of_view"] = False
        payload.pop("path")
        torch.save(payload, tmp_path / "off.pt")
        rgb = frames(1, (64, 80))[0]
        with Segmenter.from_path(tiny_run) as on, Segmenter.from_path(tmp_path / "off.pt") as off:
            a, b = on.predict(rgb), off.predict(rgb)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
