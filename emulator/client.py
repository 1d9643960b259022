"""A small client for a running emulator: its address, an upload token, and the test hooks.

Only httpx is needed (not the emulator's server packages), so the demo, the benchmarks
and the tests use it from any install. The ``/_emulator/`` hooks are not api.video.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx

HTTP_TIMEOUT_S = 30.0


def basic_auth(api_key: str) -> str:
    """The ``Authorization`` value api.video accepts for an API key (the key, a colon, no password)."""
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()


@dataclass
class EmulatorClient:
    """Calls an emulator at ``url`` (``http://HOST:PORT``, no trailing slash)."""

    url: str
    api_key: str

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
            response = client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    @property
    def auth_header(self) -> dict[str, str]:
        """Basic-auth headers for the emulator's API key."""
        return {"Authorization": basic_auth(self.api_key)}

    def create_upload_token(self, ttl: int = 0) -> str:
        """A new delegated upload token (``POST /upload-tokens``)."""
        body = self._call("POST", "/upload-tokens", json={"ttl": ttl}, headers=self.auth_header)
        return str(body["token"])

    def videos(self) -> list[dict[str, Any]]:
        """Every video the emulator holds, also incomplete ones (hook)."""
        return list(self._call("GET", "/_emulator/videos")["data"])

    def video(self, video_id: str) -> dict[str, Any]:
        """One video: size, sha256, complete, chunks in arrival order, title, tags, metadata (hook)."""
        return dict(self._call("GET", f"/_emulator/videos/{video_id}"))

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Change fault settings (seed, error_rate, reset_rate, latency_ms, limits, …); others stay."""
        return dict(self._call("PUT", "/_emulator/faults", json=settings))

    def faults(self) -> dict[str, Any]:
        """Current fault settings and the counters of injected faults."""
        return dict(self._call("GET", "/_emulator/faults"))

    def reset(self) -> None:
        """Wipe videos, tokens and counters."""
        self._call("POST", "/_emulator/reset")

    def requests_log(self) -> list[dict[str, Any]]:
        """Recent api.video requests (monotonic-clock times, paths without query strings)."""
        return list(self._call("GET", "/_emulator/requests"))
