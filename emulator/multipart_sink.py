"""Stream a ``multipart/form-data`` upload body straight to disk.

python-multipart's streaming :class:`MultipartParser` is driven from
``request.stream()``; file-part bytes go to a :class:`Writer` chosen when the
part's headers end (so the ``videoId`` field, when it comes first, can pick
the destination), as memoryview slices without concatenation. Text fields are
kept in memory (bounded). Memory use does not grow with the file size.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from emulator import errors
from emulator.errors import ApiError

MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024


class Writer:
    """Receives a file part's bytes; counts them all, stores at most ``limit`` of them."""

    def __init__(self, fd: int, offset: int, limit: int, path: str | None = None) -> None:
        self.fd = fd
        self.offset = offset
        self.limit = limit
        self.path = path
        self.size = 0

    def write(self, piece: memoryview) -> None:
        """Store ``piece`` at the current position (bytes past ``limit`` are only counted)."""
        room = self.limit - self.size
        if room > 0:
            view = piece if len(piece) <= room else piece[:room]
            position = self.offset + self.size
            while view:
                written = os.pwrite(self.fd, view, position)
                view, position = view[written:], position + written
        self.size += len(piece)

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_writer(path: str, offset: int, limit: int, truncate: bool) -> Writer:
    """A writer into ``path`` at ``offset`` (created if missing)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    return Writer(os.open(path, flags, 0o644), offset, limit, path)


# Called with (field name, filename, text fields seen so far); returns the part's writer.
WriterFactory = Callable[[str, str, dict[str, str]], Writer]


@dataclass
class UploadForm:
    """What a parsed upload body held."""

    fields: dict[str, str] = field(default_factory=dict)
    writer: Writer | None = None
    filename: str = ""
    file_parts: int = 0


class _Sink:
    """python-multipart callbacks collecting one form."""

    def __init__(self, open_file: WriterFactory) -> None:
        self.open_file = open_file
        self.form = UploadForm()
        self._headers: dict[str, bytes] = {}
        self._name = b""
        self._value = b""
        self._text: bytearray | None = None
        self._field = ""
        self._writer: Writer | None = None

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._headers, self._text, self._writer = {}, None, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]
        if len(self._value) > MAX_HEADER_BYTES:
            raise ApiError(errors.FILE_INVALID, 400, name="file", detail="Part header too large.")

    def on_header_end(self) -> None:
        self._headers[self._name.decode("latin-1").lower()] = self._value
        self._name, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            self._field, self._text = name, bytearray()
            return
        self.form.file_parts += 1
        if self.form.file_parts == 1:
            self.form.filename = os.path.basename(filename.decode("utf-8", "replace"))
            self._writer = self.open_file(name, self.form.filename, self.form.fields)
            self.form.writer = self._writer

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._writer is not None:
            self._writer.write(memoryview(data)[start:end])
        elif self._text is not None and len(self._text) < MAX_FIELD_BYTES:
            self._text += data[start:end]

    def on_part_end(self) -> None:
        if self._text is not None:
            self.form.fields[self._field] = self._text.decode("utf-8", "replace")
        self._text, self._writer = None, None


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary, or a 400 ``uploaded-file-no-file`` if the body is not multipart."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError(errors.FILE_NONE, 400, name="file")
    return boundary


async def read_form(
    stream: AsyncIterator[bytes], boundary: bytes, open_file: WriterFactory
) -> UploadForm:
    """Parse the whole body from ``stream``; file bytes go to writers from ``open_file``."""
    sink = _Sink(open_file)
    parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
    try:
        async for piece in stream:
            if piece:
                parser.write(piece)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # python-multipart reports malformed bodies with its own errors
        raise ApiError(errors.FILE_INVALID, 400, name="file", detail=str(exc)) from exc
    finally:
        if sink.form.writer is not None:
            sink.form.writer.close()
    return sink.form
