"""The checked JPEG / PNG decode (``imagemsg.decode_compressed``) against OpenCV's alone.

Run: .venv/bin/python benchmarks/bench_decode.py [--size 1024x1280] [--repeats 20]
One generated endoscopy frame (``data.synthetic``) is encoded as PNG and as JPEG (OpenCV's
defaults), then decoded ``--repeats`` times by ``cv2.imdecode`` and by ``decode_compressed``
(structure checked in full: JPEG markers to the end-of-image marker, PNG chunk CRCs, image
data inflated and checked, then handed to OpenCV), interleaved. Prints the medians, their
ratio, and the load average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from instrument_seg.data.synthetic import SynthConfig, render_sequence
from instrument_seg.imagemsg import decode_compressed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1024x1280", help="HxW of the frame")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    frames, _ = render_sequence(SynthConfig(height=h, width=w, n_frames=1, seed=3))
    bgr = np.ascontiguousarray(frames[0][..., ::-1])
    print("| codec | bytes | cv2.imdecode ms | checked ms | ratio |")
    print("|---|---|---|---|---|")
    for ext in (".png", ".jpg"):
        data = cv2.imencode(ext, bgr)[1].tobytes()
        plain, checked = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            t1 = time.perf_counter()
            decode_compressed(data)
            t2 = time.perf_counter()
            plain.append(t1 - t0)
            checked.append(t2 - t1)
        a, b = 1000 * np.median(plain), 1000 * np.median(checked)
        print(f"| {ext[1:]} {w}x{h} | {len(data)} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
