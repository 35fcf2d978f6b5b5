"""What the semantic-diffusion hinges saw during a run: window means of its ``loss.csv``.

Run: .venv/bin/python benchmarks/hinge_report.py RUN [--window 25]

Prints one markdown row per window of steps: the loss terms, the mean cosines phi(fg, bg)
(within a frame), phi(fg_t, fg_t1) and phi(bg_t, bg_t1), and the share of pairs whose fg / bg
hinge was active (gave a gradient). Runs without diffusion have no hinge columns to show.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

COLUMNS = ("total", "anc_t", "fg", "bg", "cos_fg_bg", "cos_fg_fg", "cos_bg_bg")
SHARES = ("fg_active", "bg_active")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory (holds loss.csv)")
    parser.add_argument("--window", type=int, default=25, help="steps per row")
    args = parser.parse_args()
    log = args.run / "loss.csv"
    if not log.is_file():
        print(f"hinge_report: {log} does not exist.", file=sys.stderr)
        return 2
    with log.open() as f:
        rows = list(csv.DictReader(f))
    if not rows or not rows[0].get("cos_fg_bg"):
        print(f"hinge_report: {log} has no hinge columns (a run without diffusion?).")
        return 2
    print("| steps | " + " | ".join(COLUMNS + SHARES) + " |")
    print("|---" * (1 + len(COLUMNS) + len(SHARES)) + "|")
    for lo in range(0, len(rows), args.window):
        chunk = rows[lo : lo + args.window]
        mean = {k: sum(float(r[k]) for r in chunk) / len(chunk) for k in COLUMNS + SHARES}
        cells = [f"{mean[k]:.3f}" for k in COLUMNS] + [f"{100 * mean[k]:.0f} %" for k in SHARES]
        print(f"| {chunk[0]['step']}-{chunk[-1]['step']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
