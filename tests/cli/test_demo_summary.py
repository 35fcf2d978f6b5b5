"""The demo's closing lines: the model against the cues, and bad report paths stop it first."""

from __future__ import annotations

from instrument_seg.cli.demo import against_cues, main


def _iou(mean: float) -> dict:
    return {"iou": {"mean": mean, "std": 0.1, "n": 4}}


def test_against_cues_names_both_cues_and_the_differences():
    offline = {"iou": {"mean": 0.65, "std": 0.1}, "dice": {"mean": 0.7, "std": 0.1}}
    cues = {
        "cues": ["color", "objectness", "location"],
        "combinations": {
            "color": {"a_pos": _iou(0.6747)},
            "color+objectness+location": {"a_pos": _iou(0.6874)},
        },
    }
    line = against_cues(offline, cues)
    assert line == (
        "demo: IoU on the demo video, model 65.00, colour cue 67.47 (-2.47), "
        "all-cue anchor 68.74 (-3.74)"
    )
    cues["cues"] = ["objectness"]  # no colour cue in the report: only what is there
    cues["combinations"] = {"objectness": {"a_pos": _iou(0.5)}}
    assert against_cues(offline, cues).endswith("model 65.00, all-cue anchor 50.00 (+15.00)")


def test_missing_report_stops_before_the_demo_runs(tmp_path, capsys):
    out = tmp_path / "ros_eval"
    rc = main(["--bag", str(tmp_path), "--model", str(tmp_path / "m.onnx"), "--out", str(out),
               "--cues", str(tmp_path / "nope.json")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"error: --cues {tmp_path / 'nope.json'} is not a file"
    assert not out.exists()
