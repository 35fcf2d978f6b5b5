"""``python -m instrument_seg``: the same as the ``instrument-seg`` command."""

import sys

from instrument_seg.cli.main import main

if __name__ == "__main__":  # not when a worker process (cue pool, torchrun) imports it
    sys.exit(main())
