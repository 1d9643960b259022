"""Video resources: ``/videos``, ``/videos/{videoId}``, ``/videos/{videoId}/status``.

Each route sees only the videos of the key's account; another account's video is 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from emulator.clock import now_epoch_s
from emulator.ingest import not_found
from emulator.routes.common import (
    json_response,
    no_content,
    note_video,
    paginate,
    read_json_object,
    require_auth,
    sort_order,
    state_of,
)
from emulator.routes.video_payload import video_changes
from emulator.videos import Video, status_json, video_json

SORT_FIELDS = ("title", "createdAt", "publishedAt", "updatedAt")
SORT_KEYS = {"title": "title", "createdAt": "created_s", "publishedAt": "created_s",
             "updatedAt": "updated_s"}


def _video(request: Request, account: str) -> Video:
    video_id = request.path_params["video_id"]
    note_video(request, video_id)
    video = state_of(request).store.video_of(video_id, account)
    if video is None:
        raise not_found(video_id)
    return video


def _matches(video: Video, request: Request) -> bool:
    params = request.query_params
    title, description = params.get("title"), params.get("description")
    if title is not None and title.lower() not in video.title.lower():
        return False
    if description is not None and description.lower() not in video.description.lower():
        return False
    if not set(params.getlist("tags[]")) <= set(video.tags):
        return False
    metadata = {m["key"]: m["value"] for m in video.metadata}
    for key, value in params.multi_items():
        if key.startswith("metadata[") and key.endswith("]") and metadata.get(key[9:-1]) != value:
            return False
    return True


async def list_videos(request: Request) -> Response:
    """``GET /videos`` with title/tags[]/metadata[k]/description filters, sorting and pages."""
    account = require_auth(request)
    sort_by, descending = sort_order(request, SORT_FIELDS, "createdAt")
    videos = [v for v in state_of(request).store.videos_of(account) if _matches(v, request)]
    videos.sort(key=lambda v: getattr(v, SORT_KEYS[sort_by]), reverse=descending)
    return json_response(paginate(request, [video_json(v) for v in videos]))


async def create(request: Request) -> Response:
    """``POST /videos`` → 201 Video (an empty container)."""
    account = require_auth(request)
    changes = video_changes(await read_json_object(request), creating=True)
    store = state_of(request).store
    video = store.new_video(changes.pop("title"), account)
    for attr, value in changes.items():
        setattr(video, attr, value)
    store.add_video(video)
    note_video(request, video.video_id)
    return json_response(video_json(video), 201)


async def get(request: Request) -> Response:
    """``GET /videos/{videoId}``."""
    account = require_auth(request)
    return json_response(video_json(_video(request, account)))


async def update(request: Request) -> Response:
    """``PATCH /videos/{videoId}``: merge; tags and metadata replace; playerId may be null."""
    account = require_auth(request)
    video = _video(request, account)
    changes = video_changes(await read_json_object(request), creating=False)
    for attr, value in changes.items():
        setattr(video, attr, value)
    video.updated_s = now_epoch_s()
    state_of(request).store.save_video(video)
    return json_response(video_json(video))


async def delete(request: Request) -> Response:
    """``DELETE /videos/{videoId}`` → 204."""
    account = require_auth(request)
    video = _video(request, account)
    state_of(request).store.delete_video(video.video_id)
    return no_content()


async def status(request: Request) -> Response:
    """``GET /videos/{videoId}/status``: ingest (uploading|uploaded) and encoding."""
    account = require_auth(request)
    return json_response(status_json(_video(request, account)))


