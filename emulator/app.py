"""The Starlette application: the route table, error rendering and the outer middleware."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from emulator import errors
from emulator.errors import ApiError
from emulator.middleware import EmulatorMiddleware
from emulator.routes import auth, hooks, tokens, upload, videos
from emulator.state import EmulatorState

ROUTES = [
    Route("/auth/api-key", auth.api_key, methods=["POST"]),
    Route("/auth/refresh", auth.refresh, methods=["POST"]),
    Route("/upload-tokens", tokens.create, methods=["POST"]),
    Route("/upload-tokens", tokens.list_tokens, methods=["GET"]),
    Route("/upload-tokens/{token}", tokens.get, methods=["GET"]),
    Route("/upload-tokens/{token}", tokens.delete, methods=["DELETE"]),
    Route("/upload", upload.upload_with_token, methods=["POST"]),
    Route("/videos", videos.list_videos, methods=["GET"]),
    Route("/videos", videos.create, methods=["POST"]),
    Route("/videos/{video_id}", videos.get, methods=["GET"]),
    Route("/videos/{video_id}", videos.update, methods=["PATCH"]),
    Route("/videos/{video_id}", videos.delete, methods=["DELETE"]),
    Route("/videos/{video_id}/status", videos.status, methods=["GET"]),
    Route("/videos/{video_id}/source", upload.upload_source, methods=["POST"]),
    # Test hooks: not api.video.
    Route("/_emulator/accounts", hooks.accounts, methods=["GET"]),
    Route("/_emulator/videos", hooks.videos, methods=["GET"]),
    Route("/_emulator/videos/{video_id}", hooks.video, methods=["GET"]),
    Route("/_emulator/faults", hooks.get_faults, methods=["GET"]),
    Route("/_emulator/faults", hooks.put_faults, methods=["PUT"]),
    Route("/_emulator/reset", hooks.reset, methods=["POST"]),
    Route("/_emulator/requests", hooks.requests, methods=["GET"]),
]


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return JSONResponse(errors.error_body(errors.METHOD_NOT_ALLOWED, 405), status_code=405)
    if exc.status_code == 404:
        return JSONResponse(errors.error_body(errors.UNRECOGNIZED_URL, 404), status_code=404)
    body = errors.error_body(errors.INVALID_PAYLOAD, exc.status_code, detail=str(exc.detail))
    return JSONResponse(body, status_code=exc.status_code)


async def _client_gone(_request: Request, _exc: Exception) -> Response:
    """The client went away mid-body (a killed worker, a cut connection): nothing to answer, no traceback."""
    return Response(status_code=400)


async def _server_error(_request: Request, _exc: Exception) -> Response:
    return JSONResponse(errors.error_body(errors.SERVER_ERROR, 500), status_code=500)


def create_app(state: EmulatorState) -> ASGIApp:
    """The emulator as an ASGI application over ``state``."""
    app = Starlette(
        routes=ROUTES,
        exception_handlers={
            ApiError: _api_error,
            hooks.HookError: hooks.hook_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
            500: _server_error,
        },
    )
    app.state.emulator = state
    return EmulatorMiddleware(app, state)
