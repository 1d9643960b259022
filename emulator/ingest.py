"""Receive one upload request (``/upload`` or ``/videos/{id}/source``) into a video.

Byte ranges whose video is known when the file part starts are written in
place into the video's source file (``os.pwrite`` at the range offset); every
other file part is spooled into ``DIR/incoming/`` and moved into place
(rename, or a kernel-side copy for a range of an existing video) once the
chunk is accepted. A rejected chunk is never recorded as received.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from emulator import errors
from emulator.chunks import UploadState
from emulator.constants import MAX_RANGE_BYTES, MAX_SINGLE_UPLOAD_BYTES
from emulator.content_range import ByteRange, ContentRange, PartRange
from emulator.errors import ApiError
from emulator.multipart_sink import UploadForm, Writer, open_writer, read_form
from emulator.store import Store
from emulator.videos import Video

VIDEO_ID_FIELD = "videoId"
SPOOL_LIMIT_BYTES = MAX_SINGLE_UPLOAD_BYTES + 1  # enough to tell "too large" apart


@dataclass
class Upload:
    """One upload request in progress."""

    store: Store
    rng: ContentRange | None
    video: Video | None  # known from the path, or from a videoId field seen before the file
    account: str  # the account the upload acts for: only its videos can be named
    admitted: bool = False
    spooled: bool = False
    new_video: bool = False


def not_found(video_id: str) -> ApiError:
    """The 404 for an unknown video."""
    return ApiError(errors.RESOURCE_NOT_FOUND, 404, name="videoId")


def admit(state: UploadState, video: Video, rng: ContentRange | None) -> None:
    """Header rules for ``rng`` against ``video`` (reserves byte ranges and parts)."""
    if video.complete:
        raise ApiError(errors.SOURCE_ALREADY_UPLOADED, 400, name="file", with_problems=True)
    if isinstance(rng, ByteRange):
        state.admit_bytes(rng)
    elif isinstance(rng, PartRange):
        state.admit_part(rng)
    else:
        state.admit_single()


def _spool_path(store: Store) -> str:
    incoming = store.data_dir / "incoming"
    incoming.mkdir(exist_ok=True)
    return str(incoming / uuid.uuid4().hex)


def writer_factory(upload: Upload) -> Callable[[str, str, dict[str, str]], Writer]:
    """Choose each file part's destination when its headers end."""

    def open_file(_name: str, _filename: str, fields: dict[str, str]) -> Writer:
        if upload.video is None and fields.get(VIDEO_ID_FIELD):
            upload.video = _lookup(upload, fields[VIDEO_ID_FIELD])
        rng = upload.rng
        if upload.video is not None and isinstance(rng, ByteRange):
            if not upload.admitted:  # a /source chunk was admitted before its body was read
                admit(upload.video.upload, upload.video, rng)
                upload.admitted = True
            path = str(upload.store.source_path(upload.video.video_id))
            return open_writer(path, rng.first, rng.length, truncate=False)
        upload.spooled = True
        limit = MAX_RANGE_BYTES + 1 if rng is not None else SPOOL_LIMIT_BYTES
        return open_writer(_spool_path(upload.store), 0, limit, truncate=True)

    return open_file


def _lookup(upload: Upload, video_id: str) -> Video:
    video = upload.store.video_of(video_id, upload.account)
    if video is None:
        raise not_found(video_id)
    return video


async def receive(
    upload: Upload, stream: AsyncIterator[bytes], boundary: bytes
) -> tuple[Video, UploadForm]:
    """Read the body and record the chunk; returns the video and the parsed form."""
    form: UploadForm | None = None
    try:
        form = await read_form(stream, boundary, writer_factory(upload))
        video = _resolve_video(upload, form)
        writer = _only_writer(form)
        if not upload.admitted:
            admit(video.upload, video, upload.rng)
            upload.admitted = True
        _accept(upload, video, writer.size)
    except BaseException:
        if upload.admitted and upload.video is not None:
            upload.video.upload.release(upload.rng)
        _discard_spool(upload, form)
        raise
    if upload.new_video:
        upload.store.add_video(video)
    _place(upload, video, writer)
    return video, form


def _resolve_video(upload: Upload, form: UploadForm) -> Video:
    if upload.video is None and form.fields.get(VIDEO_ID_FIELD):
        upload.video = _lookup(upload, form.fields[VIDEO_ID_FIELD])
    if upload.video is None:
        upload.video = upload.store.new_video(form.filename or "file", upload.account)
        upload.new_video = True
    return upload.video


def _only_writer(form: UploadForm) -> Writer:
    if form.file_parts > 1:
        raise ApiError(errors.FILE_MULTIPLE, 400, name="file")
    if form.writer is None:
        raise ApiError(errors.FILE_NONE, 400, name="file")
    return form.writer


def _accept(upload: Upload, video: Video, size: int) -> None:
    state, rng = video.upload, upload.rng
    if isinstance(rng, ByteRange):
        state.accept_bytes(rng, size)
    elif isinstance(rng, PartRange):
        state.accept_part(rng, size)
    else:
        state.accept_single(size)


def _discard_spool(upload: Upload, form: UploadForm | None) -> None:
    if upload.spooled and form is not None and form.writer is not None and form.writer.path:
        _unlink(form.writer.path)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _place(upload: Upload, video: Video, writer: Writer) -> None:
    """Move a spooled file part to where the accepted chunk belongs."""
    if not upload.spooled or writer.path is None:
        return
    store, rng = upload.store, upload.rng
    if isinstance(rng, PartRange):
        os.replace(writer.path, store.part_path(video.video_id, rng.number))
    elif rng is None or (upload.new_video and rng.first == 0):
        os.replace(writer.path, store.source_path(video.video_id))
    else:
        _copy_at(writer.path, str(store.source_path(video.video_id)), rng.first, writer.size)
        _unlink(writer.path)


def _copy_at(src_path: str, dst_path: str, offset: int, size: int) -> None:
    src = os.open(src_path, os.O_RDONLY)
    dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        done = 0
        while done < size:
            copied = os.copy_file_range(src, dst, size - done, 0 + done, offset + done)
            if copied == 0:
                break
            done += copied
    finally:
        os.close(src)
        os.close(dst)
