"""Starting the long-running processes with this app: worker, Flower, beat, and the emulator.

``vuq worker|flower|beat`` replace themselves with ``celery -A workers …`` plus vuq's
defaults; the settings are checked first, so a bad VUQ_* value is one line, not a Celery
traceback. ``--celery-help`` / ``--flower-help`` show the wrapped tool's own options.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tasks.outbound import is_loopback
from tasks.settings import Settings, get_settings
from workers.console.endings import UsageError

SUMMARY = {
    "worker": "start a Celery worker for the upload queue",
    "flower": "start Flower, Celery's monitor, for this app",
    "beat": "start Celery beat, which runs the janitor (exactly one per deployment)",
    "emulator": "start the local api.video emulator (needs vuq[emulator])",
}
OPTIONS_HELP = {
    "worker": "Celery worker options (--concurrency N, -n NAME, --pool threads, ...). vuq adds "
              "-Q $VUQ_QUEUE, --pool prefork and --loglevel $VUQ_LOG_LEVEL unless given. "
              "`vuq worker --celery-help` lists Celery's options.",
    "flower": "Flower options, as --name=value or --name value (--port 5555, --basic_auth=...). vuq adds "
              "--address=127.0.0.1 and its task columns unless given, refuses a non-loopback address "
              "without authentication (VUQ_FLOWER_BASIC_AUTH, --basic_auth, --auth) unless you pass "
              "--unauthenticated, and warns on loopback without it. `vuq flower --flower-help` lists Flower's options.",
    "beat": "Celery beat options. vuq adds --schedule $VUQ_BEAT_SCHEDULE and --loglevel $VUQ_LOG_LEVEL "
            "unless given. `vuq beat --celery-help` lists Celery's options.",
    "emulator": "--host H --port P --data-dir D --api-key K [--limits production] ...; "
                "`vuq emulator --help` lists them all.",
}
WRAPPED_HELP = {"worker": "--celery-help", "beat": "--celery-help", "flower": "--flower-help"}
# Flower's task list: what a person needs to tell uploads apart (the kwargs carry job, chunk k/n,
# title and file; see tasks.pipeline.message.label) and why one failed.
FLOWER_TASK_COLUMNS = "name,state,kwargs,exception,retries,received,runtime,worker,uuid"
UNAUTHENTICATED_FLAG = "--unauthenticated"
_FLOWER_AUTH_OPTIONS = ("basic_auth", "auth", "auth_provider")
_FLOWER_AUTH_ENV = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH", "FLOWER_AUTH_PROVIDER")


def celery_command(command: str, args: Sequence[str]) -> int:
    """Replace this process with ``celery -A workers COMMAND`` plus vuq's defaults and ``args``."""
    if command == "flower" and WRAPPED_HELP[command] in args:
        return _flower_help()
    if WRAPPED_HELP[command] in args:
        argv = [sys.executable, "-m", "celery", "-A", "workers", command, "--help"]
    else:
        settings = get_settings()  # a bad VUQ_* value stops here, in one line
        args = flower_args(args, settings) if command == "flower" else list(args)
        argv = [sys.executable, "-m", "celery", "-A", "workers", command, *defaults(command, args, settings), *args]
    os.execv(sys.executable, argv)
    return 0  # not reached


def emulator_command(args: Sequence[str]) -> int:
    """``vuq emulator …``: the emulator's own command line, if its server packages are installed."""
    from emulator.extra import missing_message

    problem = missing_message()
    if problem is not None:
        raise UsageError(problem)
    from emulator.cli import main

    return main(list(args))


def defaults(command: str, args: Sequence[str], settings: Settings) -> list[str]:
    """Options vuq adds unless the caller gave them."""
    extra: list[str] = []
    if command == "worker":
        if not _given(args, "-Q", "--queues"):
            extra += ["-Q", settings.queue]
        if not _given(args, "-P", "--pool"):
            extra += ["--pool", "prefork"]
    if command in ("worker", "beat") and not _given(args, "-l", "--loglevel"):
        extra += ["--loglevel", settings.log_level]
    if command == "beat" and not _given(args, "-s", "--schedule"):
        schedule = Path(settings.beat_schedule).expanduser()
        schedule.parent.mkdir(parents=True, exist_ok=True)
        extra += ["--schedule", str(schedule)]
    return extra


def _given(args: Sequence[str], short: str, long: str) -> bool:
    """Whether an option was given: ``-Q q``, ``-Qq``, ``--queues q`` or ``--queues=q``."""
    return any(a in (short, long) or a.startswith(long + "=") or (a.startswith(short) and not a.startswith("--"))
               for a in args)


def flower_args(args: Sequence[str], settings: Settings) -> list[str]:
    """Flower's options in the ``--name=value`` form tornado needs, vuq's defaults added, and its
    address checked: no unauthenticated Flower beyond loopback unless explicitly asked for."""
    options = _join_values(args)
    unauthenticated = UNAUTHENTICATED_FLAG in options
    options = [o for o in options if o != UNAUTHENTICATED_FLAG]
    names = {_option_name(o) for o in options if o.startswith("--")}
    if settings.flower_basic_auth:  # through the environment, so `ps` never shows it
        os.environ.setdefault("FLOWER_BASIC_AUTH", settings.flower_basic_auth)
    if "address" not in names and "unix_socket" not in names:
        options.append("--address=127.0.0.1")
    if "tasks_columns" not in names:
        options.append(f"--tasks_columns={FLOWER_TASK_COLUMNS}")
    authenticated = bool(names & set(_FLOWER_AUTH_OPTIONS)) or any(os.environ.get(v) for v in _FLOWER_AUTH_ENV)
    address = next((o.split("=", 1)[1] for o in options if _option_name(o) == "address"), "")
    if not authenticated:
        if not is_loopback(address) and "unix_socket" not in names and not unauthenticated:
            shown = address or "every interface"
            raise UsageError(f"refusing to serve Flower on {shown} without authentication: set "
                             "VUQ_FLOWER_BASIC_AUTH=user:pass (or Flower's --basic_auth / --auth), or pass "
                             f"{UNAUTHENTICATED_FLAG} if only trusted clients can reach it")
        print("vuq flower: warning: no authentication; anyone who can reach "
              f"{address or 'this host'} can see every task and use Flower's API", file=sys.stderr)
    return options


def _flower_help() -> int:
    """Flower's own options (tornado's registry: `celery flower --help` lists only Click's)."""
    import flower.options  # noqa: F401 - defines Flower's options in tornado's registry
    from tornado.options import options

    print("Flower's options, for `vuq flower --name=value` (or `--name value`):\n")
    for name, option in sorted(options._options.items()):
        if option.group_name.endswith("flower/options.py"):
            print(f"  --{name.replace('-', '_'):28} {option.help or ''}")
    return 0


def _option_name(option: str) -> str:
    return option[2:].split("=", 1)[0].replace("-", "_")


def _join_values(args: Sequence[str]) -> list[str]:
    """``--port 5557`` → ``--port=5557`` for Flower's options that take a value (tornado needs '=')."""
    takes_value = _flower_value_options()
    joined: list[str] = []
    items = list(args)
    while items:
        item = items.pop(0)
        if item.startswith("--") and "=" not in item and _option_name(item) in takes_value and items:
            item = f"{item}={items.pop(0)}"
        joined.append(item)
    return joined


def _flower_value_options() -> set[str]:
    import flower.options  # noqa: F401 - defines Flower's options in tornado's registry
    from tornado.options import options

    return {name.replace("-", "_") for name, opt in options._options.items() if opt.type is not bool}
