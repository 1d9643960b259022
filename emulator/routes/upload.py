"""Uploads: ``POST /upload?token=`` (delegated) and ``POST /videos/{videoId}/source``.

A delegated upload acts for the upload token's account: its ``videoId`` must
name a video of that account (another account's is answered as an unknown
video) and a new video it makes belongs to that account.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from emulator import errors
from emulator.chunks import MODE_PART
from emulator.clock import now_epoch_s
from emulator.constants import MIB
from emulator.content_range import parse_content_range
from emulator.errors import ApiError
from emulator.ingest import Upload, admit, not_found, receive
from emulator.multipart_sink import boundary_of
from emulator.routes.common import json_response, note_video, require_auth, state_of
from emulator.videos import Video, video_json


async def _drain(stream: AsyncIterator[bytes]) -> None:
    """Read what is left of a rejected body so the client gets to read the answer."""
    try:
        async for _ in stream:
            pass
    except ClientDisconnect:
        pass


async def _paced(stream: AsyncIterator[bytes], mib_per_s: float) -> AsyncIterator[bytes]:
    """``stream`` read no faster than ``mib_per_s`` (the ``ingest_mib_per_s`` fault: a link's rate)."""
    began, seen = time.monotonic(), 0
    async for piece in stream:
        seen += len(piece)
        ahead = began + seen / (mib_per_s * MIB) - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
        yield piece


async def _ingest(request: Request, upload: Upload) -> Response:
    rate = state_of(request).faults.settings.ingest_mib_per_s
    stream = _paced(request.stream(), rate) if rate > 0 else request.stream()
    try:
        boundary = boundary_of(request.headers.get("content-type"))
        if upload.video is not None:
            admit(upload.video.upload, upload.video, upload.rng)
            upload.admitted = True
        video, _form = await receive(upload, stream, boundary)
    except ApiError:
        await _drain(stream)
        raise
    note_video(request, video.video_id)
    return await _answer(request, video)


async def _answer(request: Request, video: Video) -> Response:
    store = state_of(request).store
    if video.complete and video.upload.mode != MODE_PART:
        video.assembled = True  # byte ranges were written in place; parts are joined when first read
    video.updated_s = now_epoch_s()
    store.save_video(video)
    if video.complete:
        return json_response(video_json(video), 201)
    return json_response({"videoId": video.video_id}, 201)


async def upload_with_token(request: Request) -> Response:
    """Delegated upload: the ``token`` query parameter authenticates; Authorization is ignored."""
    state = state_of(request)
    token_text = request.query_params.get("token")
    if not token_text:
        raise ApiError(errors.AUTH_MISSING_UPLOAD_TOKEN, 401, name="token")
    token = state.store.tokens.get(token_text)
    if token is None or not token.active(now_epoch_s()):
        raise ApiError(errors.AUTH_INVALID_UPLOAD_TOKEN, 401, name="token")
    rng = parse_content_range(request.headers.get("content-range"))
    return await _ingest(request, Upload(state.store, rng, None, token.account))


async def upload_source(request: Request) -> Response:
    """Two-step upload into a container made by ``POST /videos``."""
    account = require_auth(request)
    state = state_of(request)
    video_id = request.path_params["video_id"]
    note_video(request, video_id)
    video = state.store.video_of(video_id, account)
    if video is None:
        raise not_found(video_id)
    rng = parse_content_range(request.headers.get("content-range"))
    return await _ingest(request, Upload(state.store, rng, video, account))
