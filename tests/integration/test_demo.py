"""`make demo` / `vuq demo`: end to end on this machine, then everything stopped."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from tests.support.ports import free_port


def test_demo_starts_a_private_redis_uploads_and_cleans_up(redis_url: str) -> None:
    dead_port = free_port()  # nothing answers there, so the demo starts its own redis-server
    env = {k: v for k, v in os.environ.items() if not k.startswith("VUQ_")}
    env["VUQ_BROKER_URL"] = f"redis://127.0.0.1:{dead_port}/0"
    out = subprocess.run([sys.executable, "-m", "workers.console", "demo", "--size", "12MiB"], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^video\s+vi\w{22}$", out.stdout, re.M)
    assert re.search(r"^player\s+https://embed\.api\.video/vod/vi\w{22}$", out.stdout, re.M)
    assert re.search(r"^tags\s+vuq, demo$", out.stdout, re.M)
    redis_line = re.search(r"^redis\s+redis://127\.0\.0\.1:(\d+)/0$", out.stdout, re.M)
    assert redis_line and int(redis_line.group(1)) != dead_port
    flower = re.search(r"^flower\s+http://127\.0\.0\.1:(\d+)", out.stdout, re.M)
    assert flower and "100.0%" in out.stdout
    for port in (int(redis_line.group(1)), int(flower.group(1))):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open after the demo"
