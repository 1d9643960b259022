"""``POST /auth/api-key`` and ``POST /auth/refresh`` (no authentication required)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from emulator.routes.common import json_response, read_json_object, state_of


async def api_key(request: Request) -> Response:
    """Exchange the API key for an access and a refresh token."""
    body = await read_json_object(request)
    return json_response(state_of(request).auth.login(body.get("apiKey")))


async def refresh(request: Request) -> Response:
    """Exchange a refresh token for new tokens; the old refresh token stops working."""
    body = await read_json_object(request)
    return json_response(state_of(request).auth.refresh(body.get("refreshToken")))
