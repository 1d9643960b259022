"""Upload tokens: ``/upload-tokens`` and ``/upload-tokens/{uploadToken}`` (docs/protocol.md).

Each token belongs to the account of the key that made it; another account's
token, a deleted one and an expired one are all answered 404 ``resource-not-found``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulator import errors
from emulator.clock import atom, now_epoch_s
from emulator.constants import MAX_UPLOAD_TOKEN_TTL_S
from emulator.errors import ApiError
from emulator.routes.common import (
    json_response,
    no_content,
    paginate,
    read_json_object,
    require_auth,
    sort_order,
    state_of,
)
from emulator.store import UploadToken


def token_json(token: UploadToken) -> dict[str, Any]:
    """The api.video ``UploadToken`` object."""
    body: dict[str, Any] = {"token": token.token, "ttl": token.ttl_s,
                            "createdAt": atom(token.created_s)}
    expires = token.expires_s
    if expires is not None:
        body["expiresAt"] = atom(expires)
    return body


def _ttl(body: dict[str, Any]) -> int:
    ttl = body.get("ttl", 0)
    if ttl is None:
        return 0
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_UPLOAD_TOKEN_TTL_S:
        raise ApiError(errors.INVALID_ATTRIBUTE, 400, name="ttl", with_problems=True,
                       detail=f"ttl must be an integer between 0 and {MAX_UPLOAD_TOKEN_TTL_S}.")
    return ttl


async def create(request: Request) -> Response:
    """``POST /upload-tokens`` → 200 UploadToken."""
    account = require_auth(request)
    ttl = _ttl(await read_json_object(request))
    return json_response(token_json(state_of(request).store.create_token(ttl, account)))


async def list_tokens(request: Request) -> Response:
    """``GET /upload-tokens``: the account's active tokens, sorted and paginated."""
    account = require_auth(request)
    sort_by, descending = sort_order(request, ("createdAt", "ttl"), "createdAt")
    now = now_epoch_s()
    tokens = [t for t in state_of(request).store.tokens_of(account) if t.active(now)]
    key = "created_s" if sort_by == "createdAt" else "ttl_s"
    tokens.sort(key=lambda t: getattr(t, key), reverse=descending)
    return json_response(paginate(request, [token_json(t) for t in tokens]))


def _active_token(request: Request, account: str) -> UploadToken:
    token = state_of(request).store.token_of(request.path_params["token"], account)
    if token is None or not token.active(now_epoch_s()):
        raise ApiError(errors.RESOURCE_NOT_FOUND, 404, name="uploadToken")
    return token


async def get(request: Request) -> Response:
    """``GET /upload-tokens/{uploadToken}``: 200 for an active token of the key's account, else 404."""
    account = require_auth(request)
    return json_response(token_json(_active_token(request, account)))


async def delete(request: Request) -> Response:
    """``DELETE /upload-tokens/{uploadToken}`` → 204; the token can no longer be used, at once."""
    account = require_auth(request)
    token = _active_token(request, account)
    state_of(request).store.delete_token(token.token)
    return no_content()
