"""Test hooks under ``/_emulator/``: NOT part of api.video; no authentication.

``GET /_emulator/accounts``, ``GET /_emulator/videos[/{id}]`` (stored bytes,
digest, chunk arrival order), ``GET|PUT /_emulator/faults``, ``POST
/_emulator/reset``, ``GET /_emulator/requests``. The videos list, the request
log and the reset take an optional ``?account=<id>`` selector; without it they
cover every account.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator.acting import ACCOUNT_PARAM
from emulator.clock import now_epoch_s
from emulator.routes.common import state_of
from emulator.videos import Video, hook_json

HOOK_ERROR_STATUS = 400
HOOK_NOT_FOUND_STATUS = 404
NO_SUCH_VIDEO = "no such video"
NO_SUCH_ACCOUNT = "no such account: {account}"


class HookError(Exception):
    """A hook's error answer, ``{"error": message}`` (not an api.video body); rendered by the app."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _selected_account(request: Request) -> str | None:
    """The ``account`` selector, or None for every account; 404 for an account that is not configured."""
    account = request.query_params.get(ACCOUNT_PARAM)
    if account is None:
        return None
    if account not in state_of(request).accounts:
        raise HookError(NO_SUCH_ACCOUNT.format(account=account), HOOK_NOT_FOUND_STATUS)
    return account


async def _digest(request: Request, video: Video) -> dict[str, Any]:
    """The hook object, computing and caching the sha256 of a complete video (its parts joined first:
    api.video's answer to the last part does not wait for that)."""
    if video.complete and video.sha256 is None:
        store = state_of(request).store
        if not video.assembled:
            await run_in_threadpool(store.assemble_parts, video)
            video.assembled = True
        video.sha256 = await run_in_threadpool(store.sha256, video)
        if video.video_id in store.videos:
            store.save_video(video)
    return hook_json(video)


async def accounts(request: Request) -> Response:
    """``GET /_emulator/accounts``: each account in the order its key was given, with its counts."""
    state = state_of(request)
    now = now_epoch_s()
    body = [{"account": account.id,
             "videos": len(state.store.videos_of(account.id)),
             "upload_tokens": sum(t.active(now) for t in state.store.tokens_of(account.id))}
            for account in state.accounts]
    return JSONResponse(body)


async def video(request: Request) -> Response:
    """``GET /_emulator/videos/{videoId}`` (of any account)."""
    found = state_of(request).store.videos.get(request.path_params["video_id"])
    if found is None:
        raise HookError(NO_SUCH_VIDEO, HOOK_NOT_FOUND_STATUS)
    return JSONResponse(await _digest(request, found))


async def videos(request: Request) -> Response:
    """``GET /_emulator/videos[?account=]``: every video, also incomplete or broken ones."""
    items = state_of(request).store.videos_of(_selected_account(request))
    return JSONResponse({"data": [await _digest(request, v) for v in items]})


async def get_faults(request: Request) -> Response:
    """``GET /_emulator/faults``: settings plus counters of injected faults."""
    return JSONResponse(state_of(request).faults.to_json())


async def put_faults(request: Request) -> Response:
    """``PUT /_emulator/faults``: change any of the settings (others stay)."""
    state = state_of(request)
    try:
        changes = json.loads(await request.body() or b"{}")
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object")
        state.faults.settings = state.faults.settings.updated(changes)
    except (ValueError, TypeError) as exc:
        raise HookError(str(exc), HOOK_ERROR_STATUS) from exc
    return JSONResponse(state.faults.to_json())


async def reset(request: Request) -> Response:
    """``POST /_emulator/reset[?account=]``: wipe one account's videos, tokens, windows and log
    entries, or every account's and the counters."""
    state_of(request).reset(_selected_account(request))
    return JSONResponse({"reset": True})


async def requests(request: Request) -> Response:
    """``GET /_emulator/requests[?account=]``: recent api.video requests, oldest first."""
    return JSONResponse(state_of(request).log.of(_selected_account(request)))


async def hook_error(_request: Request, exc: Exception) -> Response:
    """Render a :class:`HookError`."""
    assert isinstance(exc, HookError)
    return JSONResponse({"error": exc.message}, status_code=exc.status)
