"""A webhook receiver on 127.0.0.1 that records what it is sent (and can fail first, or refuse)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.support.httpd import serve


@dataclass
class Received:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_first: int = 0


@contextmanager
def receiving(fail_first: int = 0, status: int = 204) -> Iterator[Received]:
    """Serve a receiver; the first ``fail_first`` POSTs are answered 503, the others ``status`` (and recorded)."""
    state = Received(url="", fail_first=fail_first)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                failing = state.fail_first > 0
                state.fail_first -= 1
                if not failing:
                    state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(503 if failing else status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        state.url = f"{base}/hooks/vuq"
        yield state
