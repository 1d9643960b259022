"""Run the api.video emulator as a real subprocess for tests.

Stable API (integration and conformance tests rely on it)::

    with running_emulator(tmp_path / "emu", api_key="k", args=["--seed", "7"]) as emu:
        emu.url                      # "http://127.0.0.1:PORT" (no trailing slash)
        emu.api_key, emu.data_dir, emu.proc
        token = emu.create_upload_token(ttl=0)     # POST /upload-tokens with Basic auth
        emu.videos()                 # GET /_emulator/videos   -> list of hook objects
        emu.video(video_id)          # GET /_emulator/videos/ID -> {"videoId", "size", "sha256",
                                     #   "complete", "chunks": [{"from","to","arrived"}], "title",
                                     #   "tags", "metadata": {key: value}}
        emu.set_faults(error_rate=0.1, seed=3)     # PUT /_emulator/faults (partial update)
        emu.faults()                 # GET /_emulator/faults (settings + "injected" counters)
        emu.reset()                  # POST /_emulator/reset
        emu.requests_log()           # GET /_emulator/requests -> [{"n","method","path","status",
                                     #   "started","finished","video_id","content_range"}]

The emulator is started with ``sys.executable -m emulator`` on port 0; the
address is read from its first stdout line. On exit it gets SIGTERM, then
SIGKILL after a deadline. The ``/_emulator/`` hooks are not part of api.video.
"""

from __future__ import annotations

import base64
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 30.0
LISTENING_PREFIX = "listening on "


def basic_auth(api_key: str) -> str:
    """The ``Authorization`` value api.video accepts for an API key."""
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()


@dataclass
class Emulator:
    """A running emulator process and helpers for its test hooks."""

    url: str
    api_key: str
    data_dir: Path
    proc: subprocess.Popen[bytes]

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._client() as client:
            response = client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    @property
    def auth_header(self) -> dict[str, str]:
        """Basic-auth headers for the emulator's API key."""
        return {"Authorization": basic_auth(self.api_key)}

    def create_upload_token(self, ttl: int = 0) -> str:
        """A new delegated upload token (``POST /upload-tokens`` with Basic auth)."""
        body = self._call("POST", "/upload-tokens", json={"ttl": ttl}, headers=self.auth_header)
        return str(body["token"])

    def videos(self) -> list[dict[str, Any]]:
        """Every video the emulator holds, also incomplete ones (hook)."""
        return list(self._call("GET", "/_emulator/videos")["data"])

    def video(self, video_id: str) -> dict[str, Any]:
        """One video's stored bytes summary: size, sha256, complete, chunks (hook)."""
        return dict(self._call("GET", f"/_emulator/videos/{video_id}"))

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Change fault settings: seed, error_rate, reset_rate, latency_ms, rate_limit_per_minute."""
        return dict(self._call("PUT", "/_emulator/faults", json=settings))

    def faults(self) -> dict[str, Any]:
        """Current fault settings and ``injected`` counters by kind."""
        return dict(self._call("GET", "/_emulator/faults"))

    def reset(self) -> None:
        """Wipe videos, tokens and counters."""
        self._call("POST", "/_emulator/reset")

    def requests_log(self) -> list[dict[str, Any]]:
        """Recent api.video requests (monotonic-clock times, no query strings)."""
        return list(self._call("GET", "/_emulator/requests"))


def _read_first_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            raise RuntimeError(f"emulator did not start (exit code {proc.poll()})")
        if selector.select(timeout=remaining):
            byte = os.read(proc.stdout.fileno(), 1)
            if not byte:
                raise RuntimeError(f"emulator closed stdout (exit code {proc.wait()})")
            line += byte
    return line.decode().strip()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def running_emulator(
    data_dir: Path, api_key: str = "test-api-key", args: Sequence[str] = ()
) -> Iterator[Emulator]:
    """Start ``python -m emulator`` on 127.0.0.1, port 0; stop it on exit."""
    command = [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", str(data_dir), "--api-key", api_key, *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=REPO_ROOT, env=env)
    try:
        line = _read_first_line(proc, time.monotonic() + START_TIMEOUT_S)
        if not line.startswith(LISTENING_PREFIX):
            raise RuntimeError(f"unexpected first line from the emulator: {line!r}")
        url = line[len(LISTENING_PREFIX):]
        yield Emulator(url=url, api_key=api_key, data_dir=data_dir, proc=proc)
    finally:
        _stop(proc)
