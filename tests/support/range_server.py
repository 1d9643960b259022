"""A small HTTP file server on 127.0.0.1 that answers byte-range GETs (or, if told, ignores them)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.support.httpd import serve

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def _handler(root: Path, ranges: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = root / self.path.split("?")[0].lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            size = path.stat().st_size
            match = _RANGE.fullmatch(self.headers.get("Range", "")) if ranges else None
            start, end = (0, size - 1)
            if match:
                start = int(match.group(1))
                end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes" if ranges else "none")
            self.end_headers()
            with open(path, "rb") as handle:
                os.sendfile(self.wfile.fileno(), handle.fileno(), start, end - start + 1)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serving(root: Path, ranges: bool = True) -> Iterator[str]:
    """Serve ``root`` on a free port; yields the base URL."""
    with serve(_handler(root, ranges)) as base:
        yield base
