"""``python -m emulator``: see :mod:`emulator.cli` (needs the ``vuq[emulator]`` extra)."""

import sys

from emulator.extra import missing_message

if (problem := missing_message()) is not None:
    print(f"emulator: {problem}", file=sys.stderr)
    sys.exit(2)

from emulator.cli import main

sys.exit(main())
