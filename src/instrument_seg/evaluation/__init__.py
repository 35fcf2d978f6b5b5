"""Scoring: per-frame IoU / Dice, dataset and stream scoring, cue scores, reports and figures."""
