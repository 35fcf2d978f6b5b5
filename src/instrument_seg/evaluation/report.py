"""Scoring a stream of predicted masks against ground truth, and the evaluation report.

No ROS here: the evaluation node (``instrument_seg.ros.evaluation_node``) feeds
:class:`StreamScorer` with ground truth and masks as they arrive, keyed by header stamp; this
module pairs them, scores each pair with ``evaluation.metrics`` (the same ``iou`` /
``dice`` / ``summarize`` as ``instrument-seg evaluate``, so the numbers are comparable to the
last digit), measures latency, and writes the report as JSON, Markdown and two PNG plots.

Conventions:

- a frame is **answered** when a mask with its stamp arrived within the time-out, else
  **missed**; IoU / Dice mean ± std (population std) are over answered frames, like the offline
  evaluation over its frames;
- **latency** is from the frame's publication (replay) or its receipt by the evaluating process
  (listen) to the receipt of its mask, in ms (the caller chooses the clock; the node uses the
  RMW's reception timestamps); p50 / p95 / max / mean over answered frames;
- **latency jitter** is the mean absolute difference of consecutive answered frames' latencies
  (the RFC 3550 inter-arrival jitter without smoothing); **publish lag** is how late frames were
  published against their schedule (paced replay only).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instrument_seg.evaluation.metrics import dice, iou, summarize
from instrument_seg.fileio import atomic_path, write_text

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
IOU_PNG = "iou_over_time.png"
LATENCY_PNG = "latency_histogram.png"
MAX_EARLY_MASKS = 256  # masks kept while their ground truth has not arrived yet (listen mode)


@dataclass
class FrameResult:
    """The outcome for one frame with ground truth.

    Attributes:
        index: position in the order the ground truth was registered.
        stamp: header stamp, ns.
        sequence, frame: names (bag sequence / frame, or the stamp in listen mode).
        iou, dice: scores of the answered mask (None when missed or unscorable).
        latency_ms: publication (or receipt) of the frame to receipt of its mask.
        status: ``answered``, ``missed`` or ``bad_mask`` (a mask of another size).
        sent_at: when the frame was published (replay) or received (listen), in seconds of the
            clock the reception times use (the node: the system clock of the RMW's reception
            stamps); None if unknown.
        publish_lag_ms: how late the frame was published against its schedule (paced replay).
    """

    index: int
    stamp: int
    sequence: str
    frame: str
    iou: float | None = None
    dice: float | None = None
    latency_ms: float | None = None
    status: str = "pending"
    sent_at: float | None = None
    received_at: float | None = None
    publish_lag_ms: float | None = None
    registered_at: float = 0.0


class StreamScorer:
    """Pairs ground truth and predicted masks by stamp, whichever arrives first (thread-safe).

    Ground truth is released as soon as its frame is scored or expires, so memory stays
    bounded by what is in flight.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._results: list[FrameResult] = []
        self._pending: dict[int, tuple[FrameResult, np.ndarray]] = {}
        self._early_masks: OrderedDict[int, tuple[np.ndarray, float]] = OrderedDict()
        self._early_sent: OrderedDict[int, float] = OrderedDict()
        self._index: dict[int, FrameResult] = {}  # every registered stamp
        self.duplicates = 0
        self.late = 0
        self.unknown = 0
        self.first_answer_at: float | None = None
        self.last_answer_at: float | None = None

    # --- feeding ---------------------------------------------------------------------------

    def expect(
        self,
        stamp: int,
        gt: np.ndarray,
        sequence: str,
        frame: str,
        sent_at: float | None = None,
        publish_lag_ms: float | None = None,
        now: float | None = None,
    ) -> FrameResult:
        """Registers the ground truth (bool (H, W)) of the frame with header stamp ``stamp``.

        ``now`` (monotonic, default: now) is the registration time :meth:`expire` compares
        with; ``sent_at`` and the ``received_at`` of :meth:`answer` share another clock.
        """
        now = time.monotonic() if now is None else now
        with self._cond:
            if stamp in self._index:
                self.duplicates += 1
                return self._index[stamp]
            result = FrameResult(
                len(self._results),
                stamp,
                sequence,
                frame,
                sent_at=sent_at,
                publish_lag_ms=publish_lag_ms,
                registered_at=now,
            )
            if result.sent_at is None:
                result.sent_at = self._early_sent.pop(stamp, None)
            self._results.append(result)
            self._index[stamp] = result
            self._pending[stamp] = (result, np.asarray(gt, bool))
            early = self._early_masks.pop(stamp, None)
            if early is not None:
                self._score(stamp, *early)
            return result

    def sent(self, stamp: int, at: float) -> None:
        """The frame with ``stamp`` was published (or received) at time ``at`` (the clock of
        ``received_at``)."""
        with self._cond:
            result = self._index.get(stamp)
            if result is not None:
                if result.sent_at is None:
                    result.sent_at = at
                    if result.received_at is not None:  # its mask was handled first
                        result.latency_ms = 1000.0 * (result.received_at - at)
            elif stamp not in self._early_sent:
                self._early_sent[stamp] = at
                while len(self._early_sent) > MAX_EARLY_MASKS:
                    self._early_sent.popitem(last=False)

    def answer(self, stamp: int, mask: np.ndarray, received_at: float | None = None) -> bool:
        """A predicted mask ((H, W), non-zero = instrument) arrived; True if it scored a frame."""
        received_at = time.time() if received_at is None else received_at
        with self._cond:
            if stamp in self._pending:
                self._score(stamp, mask, received_at)
                return True
            if stamp in self._index:
                if self._index[stamp].status == "missed":
                    self.late += 1  # arrived after mask_timeout: the frame stays missed
                else:
                    self.duplicates += 1  # a second mask for a frame already scored
                return False
            self._early_masks[stamp] = (np.asarray(mask) > 0, received_at)
            while len(self._early_masks) > MAX_EARLY_MASKS:
                self._early_masks.popitem(last=False)
                self.unknown += 1
            return False

    def _score(self, stamp: int, mask: np.ndarray, received_at: float) -> None:
        result, gt = self._pending.pop(stamp)
        pred = np.asarray(mask) > 0
        if pred.shape != gt.shape:
            result.status = "bad_mask"
        else:
            result.iou, result.dice = iou(pred, gt), dice(pred, gt)
            result.status = "answered"
        result.received_at = received_at
        if result.sent_at is not None:
            result.latency_ms = 1000.0 * (received_at - result.sent_at)
        if self.first_answer_at is None:
            self.first_answer_at = received_at
        self.last_answer_at = received_at
        self._cond.notify_all()

    def expire(self, older_than: float) -> int:
        """Counts frames registered before monotonic time ``older_than`` and still unanswered
        as missed; returns how many."""
        with self._cond:
            stale = [s for s, (r, _) in self._pending.items() if r.registered_at < older_than]
            for stamp in stale:
                self._pending.pop(stamp)[0].status = "missed"
            return len(stale)

    def finish(self) -> None:
        """Counts every frame still unanswered as missed."""
        self.expire(math.inf)

    # --- waiting and reading ---------------------------------------------------------------

    def wait_answered(self, stamp: int, timeout: float) -> bool:
        """True once the frame with ``stamp`` is no longer pending (scored), within ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: stamp not in self._pending, timeout)

    def wait_all(self, timeout: float) -> bool:
        """True once nothing is pending, within ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    def kick(self) -> None:
        """Wakes every waiter (e.g. at shutdown)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def results(self) -> list[FrameResult]:
        with self._cond:
            return list(self._results)

    def counts(self) -> dict[str, int]:
        """Frames registered, answered, missed, with a bad mask, and pending."""
        with self._cond:
            statuses = [r.status for r in self._results]
        return {
            "frames": len(statuses),
            "answered": statuses.count("answered"),
            "missed": statuses.count("missed"),
            "bad_mask": statuses.count("bad_mask"),
            "pending": statuses.count("pending"),
        }


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def latency_stats(latencies_ms: list[float]) -> dict[str, float | int]:
    """p50 / p95 / max / mean (ms) and n; NaN when empty."""
    values = np.asarray(latencies_ms, np.float64)
    if values.size == 0:
        nan = float("nan")
        return {"p50": nan, "p95": nan, "max": nan, "mean": nan, "n": 0}
    p50, p95 = np.percentile(values, [50, 95])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "n": int(values.size),
    }


def jitter_ms(latencies_ms: list[float]) -> float:
    """Mean |L_k - L_(k-1)| over consecutive latencies (ms); NaN for fewer than two."""
    values = np.asarray(latencies_ms, np.float64)
    if values.size < 2:
        return float("nan")
    return float(np.abs(np.diff(values)).mean())


def build_report(
    results: list[FrameResult], settings: Mapping[str, Any], extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The report as a JSON-ready dict (stable keys; NaN where undefined).

    Args:
        results: every frame with ground truth, in order.
        settings: how the run was made (mode, pace, bag, topics...), copied under ``settings``.
        extra: more top-level entries (e.g. ``duration_s``, ``segmentation_node``).
    """
    answered = [r for r in results if r.status == "answered"]
    latencies = [r.latency_ms for r in answered if r.latency_ms is not None]
    lags = [r.publish_lag_ms for r in results if r.publish_lag_ms is not None]
    report: dict[str, Any] = {
        "settings": dict(settings),
        "frames_total": len(results),
        "frames_answered": len(answered),
        "frames_missed": sum(r.status == "missed" for r in results),
        "frames_bad_mask": sum(r.status == "bad_mask" for r in results),
        "iou": summarize([r.iou for r in answered]),
        "dice": summarize([r.dice for r in answered]),
        "latency_ms": latency_stats(latencies),
        "latency_jitter_ms": jitter_ms(latencies),
        "publish_lag_ms": latency_stats(lags) if lags else None,
        **dict(extra),
        "frames": [
            {
                "sequence": r.sequence,
                "frame": r.frame,
                "stamp": r.stamp,
                "status": r.status,
                "iou": r.iou,
                "dice": r.dice,
                "latency_ms": r.latency_ms,
            }
            for r in results
        ],
    }
    return report


def summary_line(report: Mapping[str, Any]) -> str:
    """One line: frames, IoU / Dice mean ± std (%), latency p50 / p95 / max."""
    iou_, dice_, lat = report["iou"], report["dice"], report["latency_ms"]
    line = (
        f"{report['frames_answered']}/{report['frames_total']} frame(s) answered "
        f"({report['frames_missed']} missed), IoU {_pct(iou_)}, Dice {_pct(dice_)}"
    )
    if lat["n"]:
        line += (
            f", latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, max {lat['max']:.1f} ms"
        )
    return line


def _pct(stats: Mapping[str, Any]) -> str:
    if not stats["n"]:
        return "n/a"
    return f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f} %"


def _ms(value: Any) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.1f}")
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _json_ready(value: Any) -> Any:
    """NaN -> None recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def markdown(report: Mapping[str, Any], max_rows: int = 200) -> str:
    """The report as Markdown: settings, accuracy, timing, the two figures, per-frame table."""
    s = report["settings"]
    lat, lag = report["latency_ms"], report.get("publish_lag_ms")
    lines = [
        "# Evaluation report",
        "",
        f"`evaluation_node` in **{s.get('mode', '?')}** mode"
        + (f", pace **{s['pace']}**" if s.get("mode") == "replay" else "")
        + (f" ({s['rate']:g} Hz)" if s.get("pace") == "fixed" else "")
        + ".",
        "",
        "| setting | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | `{v}` |" for k, v in s.items()]
    seg = report.get("segmentation_node") or {}
    for key in ("backend", "model_path", "input_size", "dropped", "rejected"):
        if key in seg:
            lines.append(f"| segmentation_node {key} | `{seg[key]}` |")
    lines += [
        "",
        "## Accuracy",
        "",
        "IoU and Dice per frame with `instrument_seg.evaluation.metrics` (the conventions of "
        "`instrument-seg evaluate`), mean ± population std over answered frames.",
        "",
        "| frames | answered | missed | bad size | IoU | Dice |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {report['frames_total']} | {report['frames_answered']} | {report['frames_missed']} "
        f"| {report['frames_bad_mask']} | {_pct(report['iou'])} | {_pct(report['dice'])} |",
        "",
        "## Timing",
        "",
        "Latency: frame published (replay) or received (listen) to its mask received (RMW "
        "reception times), in ms.",
        "",
        "| latency p50 | p95 | max | mean | jitter | publish lag p95 | output rate (Hz) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {_ms(lat['p50'])} | {_ms(lat['p95'])} | {_ms(lat['max'])} | {_ms(lat['mean'])} "
        f"| {_ms(report['latency_jitter_ms'])} | {_ms(lag['p95'] if lag else None)} "
        f"| {_ms(report.get('output_rate_hz'))} |",
        "",
        f"![IoU and Dice over time]({IOU_PNG})",
        "",
        f"![Latency histogram]({LATENCY_PNG})",
        "",
        "## Frames",
        "",
        "| sequence | frame | stamp | status | IoU | Dice | latency (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    frames = report["frames"]
    for f in frames[:max_rows]:
        lines.append(
            f"| {f['sequence']} | {f['frame']} | {f['stamp']} | {f['status']} | "
            + (f"{f['iou']:.4f} | {f['dice']:.4f}" if f["iou"] is not None else "- | -")
            + f" | {_ms(f['latency_ms'])} |"
        )
    if len(frames) > max_rows:
        lines.append(f"| ... {len(frames) - max_rows} more in {REPORT_JSON} | | | | | | |")
    return "\n".join(lines) + "\n"


def plot_iou(report: Mapping[str, Any], path: Path) -> None:
    """IoU and Dice per frame over time; missed frames marked at 0; sequence starts dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = report["frames"]
    x = np.arange(len(frames))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for key, style in (("iou", "o-"), ("dice", "s-")):
        y = np.array([np.nan if f[key] is None else f[key] for f in frames], float)
        ax.plot(x, 100 * y, style, ms=3, lw=1, label=key.upper() if key == "iou" else "Dice")
    missed = [k for k, f in enumerate(frames) if f["status"] != "answered"]
    if missed:
        ax.plot(missed, [0] * len(missed), "rx", label="missed")
    for k in range(1, len(frames)):
        if frames[k]["sequence"] != frames[k - 1]["sequence"]:
            ax.axvline(k - 0.5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("frame (replay order)")
    ax.set_ylabel("%")
    ax.set_ylim(-3, 103)
    ax.set_title(
        f"IoU {_pct(report['iou'])}, Dice {_pct(report['dice'])} "
        f"({report['frames_answered']}/{report['frames_total']} frames)",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(report: Mapping[str, Any], path: Path) -> None:
    """Histogram of per-frame latency with p50 / p95 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [f["latency_ms"] for f in report["frames"] if f["latency_ms"] is not None]
    lat = report["latency_ms"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if values:
        ax.hist(values, bins=min(30, max(5, len(values) // 2)), color="tab:blue", alpha=0.8)
        for q, style in (("p50", "-"), ("p95", "--")):
            ax.axvline(lat[q], color="k", ls=style, lw=1, label=f"{q} {lat[q]:.1f} ms")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no latency measured", ha="center", va="center")
    ax.set_xlabel("latency, frame published -> mask received (ms)")
    ax.set_ylabel("frames")
    ax.set_title(f"latency over {lat['n']} frames (max {_ms(lat['max'])} ms)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Writes ``report.json``, ``report.md``, ``iou_over_time.png``, ``latency_histogram.png``.

    Each file is written to a temporary sibling and renamed, so none is ever half written.

    Returns:
        Kind (``json``, ``markdown``, ``iou``, ``latency``) -> path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / REPORT_JSON,
        "markdown": out / REPORT_MD,
        "iou": out / IOU_PNG,
        "latency": out / LATENCY_PNG,
    }
    for kind, plot in (("iou", plot_iou), ("latency", plot_latency)):
        with atomic_path(paths[kind]) as tmp:
            plot(report, tmp)
    write_text(paths["markdown"], markdown(report))
    write_text(
        paths["json"], json.dumps(_json_ready(dict(report)), indent=2, allow_nan=False) + "\n"
    )
    return paths
