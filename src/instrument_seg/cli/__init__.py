"""The ``instrument-seg`` command line (also ``python -m instrument_seg``)."""

from instrument_seg.cli.main import main

__all__ = ["main"]
