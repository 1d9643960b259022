"""A small client for a running emulator: its address, an upload token, and the test hooks.

Only httpx is needed (not the emulator's server packages), so the demo, the benchmarks
and the tests use it from any install. The ``/_emulator/`` hooks are not api.video.

API-key calls use ``api_key``; :meth:`EmulatorClient.for_key` gives a client of
another account of the same emulator. Hooks cover every account unless given
``account=`` (an account id, see :attr:`EmulatorClient.account`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx

from emulator.accounts import account_id

HTTP_TIMEOUT_S = 30.0


def basic_auth(api_key: str) -> str:
    """The ``Authorization`` value api.video accepts for an API key (the key, a colon, no password)."""
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()


def _selector(account: str | None) -> dict[str, str]:
    return {} if account is None else {"account": account}


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

    def for_key(self, api_key: str) -> EmulatorClient:
        """A client of the same emulator whose API-key calls use ``api_key`` (another account)."""
        return EmulatorClient(self.url, api_key)

    @property
    def account(self) -> str:
        """The id of this client's account (derived from its API key, not secret)."""
        return account_id(self.api_key)

    @property
    def auth_header(self) -> dict[str, str]:
        """Basic-auth headers for this client's API key."""
        return {"Authorization": basic_auth(self.api_key)}

    def create_upload_token(self, ttl: int = 0) -> str:
        """A new delegated upload token of this client's account (``POST /upload-tokens``)."""
        body = self._call("POST", "/upload-tokens", json={"ttl": ttl}, headers=self.auth_header)
        return str(body["token"])

    def upload_tokens(self) -> list[str]:
        """This client's account's active upload tokens (``GET /upload-tokens``, every page)."""
        return [item["token"] for item in self._pages("/upload-tokens")]

    def list_videos(self) -> list[dict[str, Any]]:
        """This client's account's videos as api.video lists them (``GET /videos``, every page)."""
        return self._pages("/videos")

    def _pages(self, path: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._call("GET", path, params={"currentPage": page, "pageSize": 100}, headers=self.auth_header)
            found += body["data"]
            if page >= int(body["pagination"]["pagesTotal"] or 1):
                return found
            page += 1

    def accounts(self) -> list[dict[str, Any]]:
        """Every account in the order given: ``[{"account", "videos", "upload_tokens"}]`` (hook)."""
        return list(self._call("GET", "/_emulator/accounts"))

    def videos(self, account: str | None = None) -> list[dict[str, Any]]:
        """Every video the emulator holds, or ``account``'s, also incomplete ones (hook)."""
        return list(self._call("GET", "/_emulator/videos", params=_selector(account))["data"])

    def video(self, video_id: str) -> dict[str, Any]:
        """One video: account, size, sha256, complete, chunks in arrival order, title, tags, metadata (hook)."""
        return dict(self._call("GET", f"/_emulator/videos/{video_id}"))

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Change fault settings (seed, error_rate, reset_rate, latency_ms, limits, …); others stay."""
        return dict(self._call("PUT", "/_emulator/faults", json=settings))

    def faults(self) -> dict[str, Any]:
        """Current fault settings and the counters of injected faults."""
        return dict(self._call("GET", "/_emulator/faults"))

    def reset(self, account: str | None = None) -> None:
        """Wipe videos, tokens and counters; with ``account``, only that account's."""
        self._call("POST", "/_emulator/reset", params=_selector(account))

    def requests_log(self, account: str | None = None) -> list[dict[str, Any]]:
        """Recent api.video requests, or those acting for ``account`` (monotonic-clock times,
        paths without query strings)."""
        return list(self._call("GET", "/_emulator/requests", params=_selector(account)))
