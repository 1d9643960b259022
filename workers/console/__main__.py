"""``python -m workers.console`` is ``vuq``."""

from workers.console.cli import main

raise SystemExit(main())
