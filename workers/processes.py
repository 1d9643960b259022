"""Starting the long-running processes with this app: worker, Flower, beat."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from tasks.settings import get_settings


def celery_command(command: str, args: Sequence[str]) -> int:
    """Replace this process with ``celery -A workers COMMAND`` plus vuq's defaults and ``args``."""
    argv = [sys.executable, "-m", "celery", "-A", "workers", command, *defaults(command, args), *args]
    os.execv(sys.executable, argv)
    return 0  # not reached


def defaults(command: str, args: Sequence[str]) -> list[str]:
    """Options vuq adds unless the caller gave them."""
    settings = get_settings()
    given = set(args)
    extra: list[str] = []
    if command == "worker":
        if not given & {"-Q", "--queues"} and not any(a.startswith(("-Q", "--queues=")) for a in args):
            extra += ["-Q", settings.queue]
        if not any(a.startswith(("-l", "--loglevel")) for a in args):
            extra += ["--loglevel", settings.log_level]
        if not any(a.startswith("--pool") or a == "-P" for a in args):
            extra += ["--pool", "prefork"]
    elif command == "flower":
        if settings.flower_basic_auth:  # through the environment, so `ps` never shows it
            os.environ.setdefault("FLOWER_BASIC_AUTH", settings.flower_basic_auth)
    elif command == "beat" and not any(a.startswith(("-l", "--loglevel")) for a in args):
        extra += ["--loglevel", settings.log_level]
    return extra
