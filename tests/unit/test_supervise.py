"""Children started through ``workers.lab.supervise`` do not outlive the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from workers.lab.supervise import start, stop_all, wait_until

PARENT = """
import sys, time
from pathlib import Path
from workers.lab.supervise import start
child = start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], {}, Path(sys.argv[1]))
print(child.pid, flush=True)
time.sleep(120)
"""


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return state == "Z"  # exited, waiting for init to reap it


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_child_gets_sigterm_when_its_starter_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE,
                              cwd=Path(__file__).parents[2])
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert not gone(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    wait_until(lambda: gone(child), 10, "the orphaned child to exit")


def test_stop_ends_a_child(tmp_path: Path) -> None:
    child = start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], {}, tmp_path)
    assert child.alive
    child.stop(timeout_s=10)
    assert not child.alive
    assert child.proc.returncode == -signal.SIGTERM


SLOW_TO_STOP = """
import signal, sys, time
def stopping(*_):
    print("term", time.monotonic(), flush=True)
    time.sleep(1.0)  # a warm shutdown
    print("exit", time.monotonic(), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stopping)
print("ready", flush=True)
time.sleep(120)
"""


def test_stop_all_shuts_children_down_side_by_side(tmp_path: Path) -> None:
    children = [start(f"slow-{i}", [sys.executable, "-c", SLOW_TO_STOP], {}, tmp_path) for i in range(3)]
    for child in children:
        child.wait_for(lambda log: "ready" in log, 10)
    stop_all(children, timeout_s=10)
    assert [c.proc.returncode for c in children] == [0, 0, 0]  # each finished its own shutdown
    times = {kind: [float(line.split()[1]) for c in children for line in c.log().splitlines()
                    if line.startswith(kind)] for kind in ("term", "exit")}
    assert max(times["term"]) < min(times["exit"]), "a child got SIGTERM only after another had exited"
