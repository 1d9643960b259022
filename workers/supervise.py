"""Child processes for the demo: start them in their own process group, wait for a sign, stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT_S = 20.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, sign: Callable[[str], bool], timeout_s: float) -> None:
        """Poll the child's log until ``sign`` holds; fail with its log's tail if it exits or stalls."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sign(self.log()):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start within {timeout_s:.0f}s:\n{self.log()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)


def start(name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Child(name, proc, log_path)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
