"""The outer ASGI layer: rate-limit headers, fault injection and the request log.

It wraps the Starlette app. api.video routes are counted (request N gets the
fault ``faults.decide(settings, N)``), rate limited per account and class
(upload, write, read; the account is the one the request acts for, see
:mod:`emulator.acting`), logged with their class and account, and answered
with the ``X-RateLimit-*`` headers of that account's window of their class.
``/_emulator/`` hooks get a read window's headers too (of their ``account``
selector, else of the default account) but are never faulted, limited or logged.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator import errors, faults
from emulator.acting import acting_account, header, hook_account
from emulator.constants import HOOK_PREFIX
from emulator.limits import CLASS_READ
from emulator.protocol import TRANSPORT_SCOPE_KEY
from emulator.ratelimit import Verdict, request_class
from emulator.requestlog import finish
from emulator.state import EmulatorState

LOG_ENTRY_SCOPE_KEY = "emulator.log_entry"
CUT_SETTLE_ROUNDS = 3  # event-loop turns for uvicorn to notice the aborted connection


class EmulatorMiddleware:
    """Wraps the app with the behaviour every api.video answer shares."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(HOOK_PREFIX) or scope["path"] == HOOK_PREFIX.rstrip("/"):
            limit = self.state.faults.settings.limit_for(CLASS_READ)
            verdict = self.state.limiter.peek(CLASS_READ, limit, hook_account(self.state, scope))
            await self.app(scope, receive, _with_headers(send, verdict, None))
            return
        await self._api_request(scope, receive, send)

    async def _api_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        method, path = scope["method"], scope["path"]
        kind = request_class(method, path)
        entry = state.log.start(method, path, kind, header(scope, b"content-range"))
        scope[LOG_ENTRY_SCOPE_KEY] = entry
        account, receive = await acting_account(state, scope, receive)
        entry["account"] = account
        decision = state.faults.next_decision()
        if decision.latency_ms > 0:
            await asyncio.sleep(decision.latency_ms / 1000)
        verdict = state.limiter.hit(kind, state.faults.settings.limit_for(kind), account)
        send = _with_headers(send, verdict, entry)
        if not verdict.allowed:
            state.faults.count_rate_limited(kind)
            await _send_json(send, 429, errors.error_body(errors.TOO_MANY_REQUESTS, 429))
        elif decision.kind == faults.KIND_ERROR:
            state.faults.count(faults.KIND_ERROR)
            error = errors.SERVER_ERROR if decision.status == 500 else errors.SERVICE_UNAVAILABLE
            await _send_json(send, decision.status, errors.error_body(error, decision.status))
        elif decision.kind == faults.KIND_RESET:
            state.faults.count(faults.KIND_RESET)
            await _cut(scope, receive, decision.reset_after_bytes)
        else:
            await self.app(scope, receive, send)
        if entry["finished"] is None:
            finish(entry, None)


def _with_headers(send: Send, verdict: Verdict, entry: dict[str, Any] | None) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", [])
                       if k.lower() not in (b"retry-after", b"x-ratelimit-limit")]
            message = {**message, "headers": headers + verdict.headers()}
            if entry is not None:
                entry["status"] = message["status"]
        elif entry is not None and message["type"] == "http.response.body" and not message.get(
            "more_body", False
        ):
            finish(entry, entry["status"])
        await send(message)

    return wrapped


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _cut(scope: Scope, receive: Receive, read_bytes: int) -> None:
    """Read up to ``read_bytes`` of the body, then abort the connection without answering."""
    seen = 0
    while seen < read_bytes:
        message = await receive()
        seen += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    transport = scope.get(TRANSPORT_SCOPE_KEY)
    if transport is None:  # not served by EmulatorHttpProtocol: make the server drop it
        raise ConnectionAbortedError("emulator fault: connection cut")
    transport.abort()
    for _ in range(CUT_SETTLE_ROUNDS):
        await asyncio.sleep(0)
