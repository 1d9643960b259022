"""Test hooks under ``/_emulator/``: NOT part of api.video; no authentication.

``GET /_emulator/videos[/{id}]`` (stored bytes, digest, chunk arrival order),
``GET|PUT /_emulator/faults``, ``POST /_emulator/reset``, ``GET /_emulator/requests``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator.routes.common import state_of
from emulator.videos import Video, hook_json

HOOK_ERROR_STATUS = 400


async def _digest(request: Request, video: Video) -> dict[str, Any]:
    """The hook object, computing and caching the sha256 of a complete, assembled video."""
    if video.complete and video.assembled and video.sha256 is None:
        store = state_of(request).store
        video.sha256 = await run_in_threadpool(store.sha256, video)
        if video.video_id in store.videos:
            store.save_video(video)
    return hook_json(video)


async def video(request: Request) -> Response:
    """``GET /_emulator/videos/{videoId}``."""
    found = state_of(request).store.videos.get(request.path_params["video_id"])
    if found is None:
        return JSONResponse({"error": "no such video"}, status_code=404)
    return JSONResponse(await _digest(request, found))


async def videos(request: Request) -> Response:
    """``GET /_emulator/videos``: every video, also incomplete or broken ones."""
    items = list(state_of(request).store.videos.values())
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
        return JSONResponse({"error": str(exc)}, status_code=HOOK_ERROR_STATUS)
    return JSONResponse(state.faults.to_json())


async def reset(request: Request) -> Response:
    """``POST /_emulator/reset``: wipe videos, tokens, counters and the request log."""
    state_of(request).reset()
    return JSONResponse({"reset": True})


async def requests(request: Request) -> Response:
    """``GET /_emulator/requests``: recent api.video requests, oldest first."""
    return JSONResponse(list(state_of(request).log.entries))
