"""uvicorn's httptools protocol, with two changes the emulator needs.

* The connection's transport is put into the ASGI scope (``emulator.transport``)
  so fault injection can cut a connection mid-body without any answer.
* Request body pieces are handed to the app as the ``bytes`` objects httptools
  produced, one per ``receive()``, instead of being appended to a bytearray and
  copied again (two full copies of every uploaded byte saved). Reading pauses
  while more than :data:`BODY_HIGH_WATER_BYTES` wait to be received.
"""

from __future__ import annotations

from collections import deque

from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

TRANSPORT_SCOPE_KEY = "emulator.transport"
BODY_HIGH_WATER_BYTES = 1024 * 1024


class PieceCycle(RequestResponseCycle):
    """A request/response cycle that queues body pieces instead of concatenating them."""

    pieces: deque[bytes]
    queued_bytes: int

    def add_piece(self, body: bytes) -> None:
        """Queue one piece from the parser; pause reading above the high-water mark."""
        self.pieces.append(body)
        self.queued_bytes += len(body)
        if self.queued_bytes > BODY_HIGH_WATER_BYTES:
            self.flow.pause_reading()
        self.message_event.set()

    async def receive(self) -> ASGIReceiveEvent:
        """ASGI receive: one queued piece at a time (see uvicorn's original)."""
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.pieces and not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = self.pieces.popleft() if self.pieces else b""
        self.queued_bytes -= len(body)
        if self.queued_bytes <= BODY_HIGH_WATER_BYTES:
            self.flow.resume_reading()
        more = bool(self.pieces) or self.more_body
        return {"type": "http.request", "body": body, "more_body": more}


class EmulatorHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol exposing the transport and passing body pieces without copies."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[TRANSPORT_SCOPE_KEY] = self.transport  # type: ignore[literal-required]

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if type(cycle) is RequestResponseCycle:
            # The ASGI task was only scheduled, so it will look receive() up on the new class.
            cycle.__class__ = PieceCycle
            assert isinstance(cycle, PieceCycle)
            cycle.pieces = deque()
            cycle.queued_bytes = 0

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or (
            self.parser.should_upgrade() and self._should_upgrade()
        ):
            return
        if isinstance(cycle, PieceCycle):
            cycle.add_piece(body)
        else:
            super().on_body(body)
