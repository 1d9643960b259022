"""The README's quick start, run as written: the bash block under "Quick start", pasted into a shell
in an empty directory, with vuq installed and Redis on 127.0.0.1:6379 (this suite's database)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
EMULATOR_PORT = 8765  # the quick start's own


def quick_start() -> str:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "no ```bash block under the README's Quick start"
    return match.group(1)


def test_the_quick_start_works_when_pasted(tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", EMULATOR_PORT)) == 0:
            pytest.fail(f"port {EMULATOR_PORT}, which the quick start uses, is taken on this machine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VUQ_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # vuq, as installed
    env["VUQ_BROKER_URL"] = redis_url  # the user's Redis: here, the suite's database
    shell = subprocess.Popen(["bash", "-e", "-c", quick_start()], cwd=tmp_path, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = shell.communicate(timeout=240)
        with httpx.Client(base_url=f"http://127.0.0.1:{EMULATOR_PORT}", timeout=10) as emulator:
            videos = emulator.get("/_emulator/videos").json()["data"]
    finally:
        os.killpg(shell.pid, signal.SIGTERM)  # the emulator and the worker it left in the background
        shell.wait(30)
    assert shell.returncode == 0, f"{out}\n{err}\n{(tmp_path / 'worker.log').read_text()[-3000:]}"
    record = json.loads(out[out.index("{"):])  # vuq status "$JOB" --json comes last
    assert record["state"] == "done" and record["title"] == "Talk" and record["chunks_total"] == 3, record
    assert "state     done" in out  # what vuq watch printed at the end
    mine = [v for v in videos if v["videoId"] == record["video_id"]]
    assert mine and mine[0]["complete"] and mine[0]["title"] == "Talk" and mine[0]["tags"] == ["conf"]
    assert mine[0]["metadata"]["speaker"] == "Ada"
