"""Median cue-generation time per frame, per cue, at 256x320 and 512x640 on this machine.

Run: .venv/bin/python benchmarks/bench_cues.py [--repeats N] [--methods alexe,edgeboxes]
Frames come from the synthetic generator (seeded). Prints medians over repeats and each cue's
ratio to the colour cue measured in the same run. Not a test: machines here are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from instrument_seg.cues.maps import centre_prior, color_cue, video_location_cue
from instrument_seg.cues.objectness import OBJECTNESS_METHODS, objectness_map
from instrument_seg.data.synthetic import SynthConfig, render_sequence


def median_ms(fn, frames, repeats: int) -> float:
    fn(frames[0])  # warm-up (lazy model loads, caches)
    times = []
    for r in range(repeats):
        frame = frames[r % len(frames)]
        start = time.perf_counter()
        fn(frame)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--methods", default=",".join(OBJECTNESS_METHODS))
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    print(f"{'size':>9} {'cue':<22} {'median ms/frame':>16} {'x colour':>9}")
    for h, w in ((256, 320), (512, 640)):
        frames, _ = render_sequence(SynthConfig(height=h, width=w, n_frames=4, seed=1))
        rows = {"color": median_ms(color_cue, frames, args.repeats)}
        maps = [color_cue(f) for f in frames]
        rows["location (video mean)"] = median_ms(
            lambda _f, maps=maps: video_location_cue(maps), frames, args.repeats
        )
        rows["location (centre)"] = median_ms(
            lambda f: centre_prior(f.shape[:2]), frames, args.repeats
        )
        for method in methods:
            rows[f"objectness:{method}"] = median_ms(
                lambda f, m=method: objectness_map(f, m), frames, args.repeats
            )
        for name, ms in rows.items():
            print(f"{h:>4}x{w:<4} {name:<22} {ms:>16.2f} {ms / rows['color']:>9.1f}")
    print(f"numpy {np.__version__}; repeats {args.repeats}; objectness methods {methods}")


if __name__ == "__main__":
    main()
