"""Which account an api.video request acts for, known before its handler runs.

The middleware needs it for the rate-limit window to count against and for the
request log:

* ``/upload?token=T``: the account of the upload token (``Authorization`` is
  ignored there, as api.video ignores it);
* ``POST /auth/api-key`` and ``POST /auth/refresh``: the account of the key or
  refresh token in the JSON body (the body, small, is read here and replayed
  to the handler);
* every other route: the account of the ``Authorization`` header (a Basic key
  or a live Bearer token).

Missing or unknown credentials give :data:`emulator.ratelimit.ANONYMOUS`
(None); the handler then answers its usual 401/400. Test hooks report the
window of their ``account`` selector, or of the default account.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Message, Receive, Scope

from emulator.clock import now_epoch_s
from emulator.ratelimit import ANONYMOUS
from emulator.state import EmulatorState

AUTH_BODY_LIMIT_BYTES = 64 * 1024  # a larger /auth/* body is not read here: it acts for no account
AUTH_BODY_FIELDS = {"/auth/api-key": "apiKey", "/auth/refresh": "refreshToken"}
UPLOAD_PATH = "/upload"
TOKEN_PARAM = "token"
ACCOUNT_PARAM = "account"


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (latin-1), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def query_param(scope: Scope, name: str) -> str | None:
    """A query parameter's value (the last one given, as Starlette reads it), or None."""
    params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
    return params.get(name)


async def acting_account(state: EmulatorState, scope: Scope, receive: Receive) -> tuple[str | None, Receive]:
    """The account ``scope``'s request acts for, and the ``receive`` to hand on (the body may be replayed)."""
    path = scope["path"]
    if path == UPLOAD_PATH:
        return _token_account(state, query_param(scope, TOKEN_PARAM)), receive
    field = AUTH_BODY_FIELDS.get(path)
    if field is not None and scope["method"] == "POST":
        messages, body = await _read_small_body(receive)
        return _auth_body_account(state, field, body), _replaying(messages, receive)
    return state.auth.account_of(header(scope, b"authorization")), receive


def hook_account(state: EmulatorState, scope: Scope) -> str:
    """The account whose read window a hook answer reports: its known selector, else the default."""
    selected = query_param(scope, ACCOUNT_PARAM)
    return selected if selected is not None and selected in state.accounts else state.accounts.default.id


def _token_account(state: EmulatorState, token_text: str | None) -> str | None:
    token = state.store.tokens.get(token_text or "")
    if token is None or not token.active(now_epoch_s()):
        return ANONYMOUS
    return token.account


def _auth_body_account(state: EmulatorState, field: str, body: bytes | None) -> str | None:
    try:
        data: Any = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        return ANONYMOUS
    value = data.get(field) if isinstance(data, dict) else None
    if field == AUTH_BODY_FIELDS["/auth/refresh"]:
        return state.auth.refresh_account(value)
    account = state.accounts.by_key(value)
    return None if account is None else account.id


async def _read_small_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """Receive the body's messages; the body too unless it exceeds :data:`AUTH_BODY_LIMIT_BYTES`."""
    messages: list[Message] = []
    body = bytearray()
    while len(body) <= AUTH_BODY_LIMIT_BYTES:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return messages, bytes(body) if len(body) <= AUTH_BODY_LIMIT_BYTES else None
    return messages, None


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` first, then what ``receive`` gives."""
    pending = deque(messages)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay
