"""Child processes: start one in its own process group with its output in a log file, wait
for a sign in that log, stop it (SIGTERM, then SIGKILL after a deadline) or kill it outright.
On Linux a child also gets SIGTERM when the process that started it dies, however it dies
(a test run or a benchmark killed with SIGKILL leaves no emulator or worker behind).

The demo, the benchmarks and the tests start Redis, the emulator, workers and beat through
this module (``workers.lab.services`` knows their commands); nothing else spawns them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
STOP_TIMEOUT_S = 20.0
POLL_S = 0.05
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass
class Child:
    """A process started by ``start``; its stdout and stderr go to ``log_path``."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, sign: Callable[[str], bool], timeout_s: float) -> None:
        """Poll the log until ``sign`` holds; fail with the log's tail if the child exits or stalls."""

        def probe() -> bool:
            if sign(self.log()):
                return True
            if not self.alive:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            return False

        try:
            wait_until(probe, timeout_s, f"{self.name} to start")
        except TimeoutError:
            raise RuntimeError(f"{self.name} did not start within {timeout_s:.0f}s:\n{self.log()[-3000:]}") from None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to the process itself (a Celery worker then stops its pool), SIGKILL to the group
        if it does not exit in time."""
        stop_all([self], timeout_s)

    def kill(self) -> None:
        """SIGKILL the whole process group (a worker's main process and its pool children)."""
        self._reap_group(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(STOP_TIMEOUT_S)

    def _reap_group(self, sig: signal.Signals = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def stop_all(children: Sequence[Child], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """``Child.stop`` for several at once: they all get SIGTERM first and shut down side by side
    (a Celery worker's warm shutdown takes a second or two), under one deadline."""
    alive = [child for child in children if child.alive]
    for child in alive:
        child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for child in alive:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
        child._reap_group()


def start(name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path,
          cwd: Path | None = None) -> Child:
    """Start ``argv`` in a new session (its own process group), output appended to ``log_dir/name.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd,
                                preexec_fn=_dies_with(os.getpid()))
    return Child(name, proc, log_path, dict(env))


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once before any fork (nothing is loaded in the child)."""
    if sys.platform != "linux":
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


def _dies_with(parent: int) -> Callable[[], None] | None:
    """A pre-exec hook: SIGTERM this child when ``parent`` (the thread that forked it) dies."""
    prctl = _prctl()
    if prctl is None:
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return hook


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = POLL_S) -> T:
    """Call ``probe`` until it returns something truthy; ``TimeoutError`` naming ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(poll_s)  # polling with a deadline, not a guessed wait
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for a child that needs a fixed one, like redis-server)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
