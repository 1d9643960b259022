"""uvicorn's httptools protocol, with two changes the emulator needs.

* The connection's transport is put into the ASGI scope (``emulator.transport``)
  so fault injection can cut a connection mid-body without any answer.
* The request body buffer may grow to :data:`BODY_HIGH_WATER_BYTES` before
  reading pauses, so each ``receive()`` hands over larger pieces (fewer
  event-loop round trips and parser calls per megabyte).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TRANSPORT_SCOPE_KEY = "emulator.transport"
BODY_HIGH_WATER_BYTES = 4 * 1024 * 1024


class EmulatorHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol exposing the transport and reading in larger pieces."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[TRANSPORT_SCOPE_KEY] = self.transport  # type: ignore[literal-required]

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or (
            self.parser.should_upgrade() and self._should_upgrade()
        ):
            return
        cycle.body += body
        if len(cycle.body) > BODY_HIGH_WATER_BYTES:
            self.flow.pause_reading()
        cycle.message_event.set()
