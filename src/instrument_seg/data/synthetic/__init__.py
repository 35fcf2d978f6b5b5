"""Procedural synthetic laparoscopy video with exact instrument masks, for demos and tests.

Each sequence is rendered from one seed. The tissue (pink-red multi-octave texture, dark
branching vessels, pale fat, wet specular spots) is built once on a canvas slightly larger than
the frame and warped a little per frame (camera drift plus slow breathing deformation). One to
three instruments pivot about a remote point outside the image and slide in and out along their
shaft, so they always enter from the border; each has a grey-metal or black shaft, a metal wrist
and two jaws that open and close. The ground truth is rasterised from the same polygons as the
image, before any optical, motion or defocus blur, so it is exact by construction.

This is not a benchmark: it exists so the pipeline can be exercised without real data.

Modules: :mod:`.config` (:class:`SynthConfig`), :mod:`.tissue`, :mod:`.instruments`,
:mod:`.render` (frames), :mod:`.dataset` (sequences on disk, generic layout). Everything public
is importable from here.
"""

from instrument_seg.data.synthetic.config import MAX_INSTRUMENTS, MAX_SIDE, MIN_SIDE, SynthConfig
from instrument_seg.data.synthetic.dataset import sequence_seed, write_dataset
from instrument_seg.data.synthetic.render import iter_frames, render_sequence

__all__ = [
    "MAX_INSTRUMENTS",
    "MAX_SIDE",
    "MIN_SIDE",
    "SynthConfig",
    "iter_frames",
    "render_sequence",
    "sequence_seed",
    "write_dataset",
]
