"""Hostile peers on 127.0.0.1: sources and callback receivers that behave badly on purpose.

``hostile_source(root, behaviour)`` serves the files under ``root`` with byte ranges, honestly for
its first ``honest`` requests (the probe a start step makes), then as ``behaviour`` says:

* ``trickle``: the right status and headers, then the body one byte every ``interval_s``;
* ``silent``: reads the request and never answers (the connection stays open);
* ``wrong-range``: a 206 for the range one byte further on than the one asked for;
* ``changed-etag``: the right bytes under another ETag (the object was replaced);
* ``too-long``: the right headers, then more bytes than the range holds.

``hostile_receiver(behaviour)`` takes webhook POSTs:

* ``trickle``: the answer ``HTTP/1.1 200 OK ...``, one byte every ``interval_s``;
* ``huge``: ``200 OK`` with a 400 MiB body, streamed as fast as the client reads it;
* ``silent``: never answers.

Each records what it was asked (``Peer.requests``) and, per connection, how long the client stayed
and how many bytes it was sent (``Peer.visits``), so a test can show the client left in time and
read little. Everything stops when the context exits: threads notice within ``interval_s``.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tasks.constants import MIB
from tests.support.httpd import serve

_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
HUGE_ANSWER_BYTES = 400 * MIB
SOURCE_BEHAVIOURS = ("trickle", "silent", "wrong-range", "changed-etag", "too-long")
RECEIVER_BEHAVIOURS = ("trickle", "huge", "silent")


@dataclass
class Visit:
    """One request: what was asked, when, how long the client stayed, how many bytes it was sent."""

    request: str
    began: float
    ended: float | None = None
    sent: int = 0

    @property
    def stayed_s(self) -> float:
        return (self.ended or time.monotonic()) - self.began


@dataclass
class Peer:
    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    visits: list[Visit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def requests(self) -> list[str]:
        with self.lock:
            return [v.request for v in self.visits]

    def visit(self, request: str) -> Visit:
        visit = Visit(request, time.monotonic())
        with self.lock:
            self.visits.append(visit)
        return visit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    peer: Peer
    interval_s: float

    def log_message(self, *args: object) -> None:
        pass

    def _hold(self) -> None:
        """Answer nothing until the peer stops or the client goes away (then the visit ends)."""
        while not self.peer.stop.is_set():
            readable, _, _ = select.select([self.connection], [], [], min(self.interval_s, 0.1))
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                return  # the client hung up

    def _trickle(self, data: bytes, visit: Visit) -> None:
        for i in range(len(data)):
            if self.peer.stop.is_set():
                return
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            visit.sent += 1
            time.sleep(self.interval_s)


@contextmanager
def _serve(handler: type[_Handler]) -> Iterator[str]:
    """``serve`` the handler; its peer's hostile answers are told to stop before the server stops."""
    with serve(handler) as base:
        try:
            yield base
        finally:
            handler.peer.stop.set()


@contextmanager
def hostile_source(root: Path, behaviour: str, honest: int = 1, interval_s: float = 1.0) -> Iterator[Peer]:
    """Serve ``root`` (``GET /<name>`` with ``Range: bytes=a-b``); badly after ``honest`` requests."""
    assert behaviour in SOURCE_BEHAVIOURS, behaviour
    peer = Peer(url="")
    served = [0]

    class Source(_Handler):
        def do_GET(self) -> None:
            path = root / self.path.split("?")[0].lstrip("/")
            match = _RANGE.fullmatch(self.headers.get("Range", ""))
            visit = self.peer.visit(f"GET {self.path} {self.headers.get('Range', '')}")
            with self.peer.lock:
                served[0] += 1
                bad = served[0] > honest
            try:
                if not path.is_file() or not match:
                    self.send_error(404 if not path.is_file() else 416)
                    return
                self._answer(path, int(match.group(1)), int(match.group(2)), bad, visit)
            except OSError:
                pass  # the client went away: what a hostile peer hopes for
            finally:
                visit.ended = time.monotonic()

        def _answer(self, path: Path, start: int, end: int, bad: bool, visit: Visit) -> None:
            data = path.read_bytes()
            size = len(data)
            if bad and behaviour == "silent":
                self._hold()
                return
            first, last = (start + 1, min(end + 1, size - 1)) if bad and behaviour == "wrong-range" else (start, end)
            body = data[first:last + 1]
            too_long = bad and behaviour == "too-long"
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            if too_long:  # no length: the body ends when the connection does, after more than the range
                self.send_header("Connection", "close")
                body += b"extra bytes past the range"
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"v2-replaced"' if bad and behaviour == "changed-etag" else '"v1"')
            self.end_headers()
            if bad and behaviour == "trickle":
                self._trickle(body, visit)
                return
            self.wfile.write(body)
            visit.sent = len(body)

    Source.peer, Source.interval_s = peer, interval_s
    with _serve(Source) as base:
        peer.url = base
        yield peer


@contextmanager
def hostile_receiver(behaviour: str, interval_s: float = 1.0) -> Iterator[Peer]:
    """A webhook receiver at ``Peer.url`` that answers as ``behaviour`` says."""
    assert behaviour in RECEIVER_BEHAVIOURS, behaviour
    peer = Peer(url="")

    class Receiver(_Handler):
        def do_POST(self) -> None:
            visit = self.peer.visit(f"POST {self.path}")
            try:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if behaviour == "silent":
                    self._hold()
                elif behaviour == "trickle":
                    self._trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", visit)
                else:
                    self._huge(visit)
            except OSError:
                pass
            finally:
                visit.ended = time.monotonic()
                self.close_connection = True

        def _huge(self, visit: Visit) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(HUGE_ANSWER_BYTES))
            self.end_headers()
            block = b"\0" * MIB
            while visit.sent < HUGE_ANSWER_BYTES and not self.peer.stop.is_set():
                self.wfile.write(block)
                visit.sent += len(block)

    Receiver.peer, Receiver.interval_s = peer, interval_s
    with _serve(Receiver) as base:
        peer.url = f"{base}/hooks/vuq?sig=secret-query"
        yield peer
