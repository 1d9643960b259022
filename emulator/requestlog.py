"""A bounded log of recent api.video requests, served by ``GET /_emulator/requests``.

Entries hold the path without its query string, so upload tokens never appear,
the request's rate-limit class (``upload``, ``write`` or ``read``) and the
account it acted for (its id; None for missing or unknown credentials).
Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from emulator.constants import REQUEST_LOG_ENTRIES


class RequestLog:
    """The last :data:`REQUEST_LOG_ENTRIES` requests, oldest first."""

    def __init__(self) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_ENTRIES)
        self.serial = 0

    def start(self, method: str, path: str, request_class: str, content_range: str | None) -> dict[str, Any]:
        """Open an entry for a request that just arrived; the caller fills in the rest (``account`` too)."""
        self.serial += 1
        entry: dict[str, Any] = {
            "n": self.serial,
            "method": method,
            "path": path,
            "class": request_class,
            "status": None,
            "started": time.monotonic(),
            "finished": None,
            "video_id": _video_id_of(path),
            "content_range": content_range,
            "account": None,
        }
        self.entries.append(entry)
        return entry

    def of(self, account: str | None = None) -> list[dict[str, Any]]:
        """The entries of requests that acted for ``account``, or every entry without it."""
        return [e for e in self.entries if account is None or e["account"] == account]

    def clear(self, account: str | None = None) -> None:
        """Forget the entries of ``account``, or every entry (the numbering continues)."""
        if account is None:
            self.entries.clear()
            return
        kept = [e for e in self.entries if e["account"] != account]
        self.entries.clear()
        self.entries.extend(kept)


def finish(entry: dict[str, Any], status: int | None) -> None:
    """Close an entry; ``status`` None means the connection was cut without an answer."""
    entry["status"] = status
    entry["finished"] = time.monotonic()


def _video_id_of(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "videos" and parts[1].startswith("vi"):
        return parts[1]
    return None
