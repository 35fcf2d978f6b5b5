"""Hand-made cues (colour, objectness, location), their fusion into anchors, and the cue cache.

See docs/method.md sections 1-2. Nothing here imports torch at import time; the HED edge
network (:mod:`instrument_seg.cues.hed`) loads only when the objectness cue asks for it.
"""
