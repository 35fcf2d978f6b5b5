"""``python -m instrument_seg``: the same as the ``instrument-seg`` command."""

import sys

from instrument_seg.cli import main

sys.exit(main())
