"""Helpers shared by the route handlers: state access, JSON in and out, auth, pagination."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator import errors
from emulator.constants import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MIN_PAGE_SIZE
from emulator.errors import ApiError
from emulator.middleware import LOG_ENTRY_SCOPE_KEY
from emulator.state import EmulatorState

PAGE_PARAM = "currentPage"
PAGE_SIZE_PARAM = "pageSize"


def state_of(request: Request) -> EmulatorState:
    """The emulator state behind this app."""
    state: EmulatorState = request.app.state.emulator
    return state


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return JSONResponse(body, status_code=status)


def no_content() -> Response:
    """A 204 answer without a body."""
    return Response(status_code=204)


def require_auth(request: Request) -> str:
    """Basic ``key:`` or Bearer, as api.video's ``apiKey`` security scheme; the key's account id.

    Everything an API-key route reads or changes is limited to that account:
    another account's video or token is answered as an unknown one.
    """
    return state_of(request).auth.check(request.headers.get("authorization"))


def note_video(request: Request, video_id: str) -> None:
    """Record the video an api.video request touched in the request log."""
    entry = request.scope.get(LOG_ENTRY_SCOPE_KEY)
    if entry is not None:
        entry["video_id"] = video_id


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``; anything else is 400 invalid-payload."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(errors.INVALID_PAYLOAD, 400, name="", detail=str(exc)) from exc
    if not isinstance(data, dict):
        raise ApiError(errors.INVALID_PAYLOAD, 400, name="", detail="Expected a JSON object.")
    return data


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    text = request.query_params.get(name)
    try:
        value = default if text is None else int(text)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        bounds: dict[str, int] = {"min": low, **({"max": high} if high is not None else {})}
        raise ApiError(errors.OUT_OF_RANGE, 400, name=name, extra={"range": bounds},
                       with_problems=True)
    return value


def paginate(request: Request, items: list[Any]) -> dict[str, Any]:
    """``{data, pagination}`` for the requested page of ``items``."""
    page = _int_param(request, PAGE_PARAM, 1, 1, None)
    size = _int_param(request, PAGE_SIZE_PARAM, DEFAULT_PAGE_SIZE, MIN_PAGE_SIZE, MAX_PAGE_SIZE)
    pages = max(1, math.ceil(len(items) / size))
    data = items[(page - 1) * size : page * size]
    keep = [(k, v) for k, v in request.query_params.multi_items()
            if k not in (PAGE_PARAM, PAGE_SIZE_PARAM)]

    def uri(number: int) -> str:
        query = urlencode([*keep, (PAGE_PARAM, str(number)), (PAGE_SIZE_PARAM, str(size))])
        return f"{request.url.path}?{query}"

    links = [{"rel": "self", "uri": uri(page)}, {"rel": "first", "uri": uri(1)}]
    if page > 1:
        links.append({"rel": "previous", "uri": uri(min(page - 1, pages))})
    if page < pages:
        links.append({"rel": "next", "uri": uri(page + 1)})
    links.append({"rel": "last", "uri": uri(pages)})
    pagination = {"currentPage": page, "pageSize": size, "pagesTotal": pages,
                  "itemsTotal": len(items), "currentPageItems": len(data), "links": links}
    return {"data": data, "pagination": pagination}


def sort_order(request: Request, allowed: tuple[str, ...], default: str) -> tuple[str, bool]:
    """Validated ``sortBy`` and whether ``sortOrder`` is descending."""
    sort_by = request.query_params.get("sortBy", default)
    order = request.query_params.get("sortOrder", "asc")
    if sort_by not in allowed:
        raise ApiError(errors.INVALID_ATTRIBUTE, 400, name="sortBy",
                       detail=f"Allowed values: {', '.join(allowed)}.")
    if order not in ("asc", "desc"):
        raise ApiError(errors.INVALID_ATTRIBUTE, 400, name="sortOrder",
                       detail="Allowed values: asc, desc.")
    return sort_by, order == "desc"
