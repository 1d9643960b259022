"""Byte-range sources: local files under the allowed roots, and http(s) URLs read with Range.

A source is opened per task, stat-ed for its size and identity (so a file that
changes mid-upload is caught), and read one block at a time for one chunk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx

from tasks.constants import STREAM_BLOCK_BYTES
from tasks.errors import SourceError, SourceUnavailable, SpecError, is_retryable_status
from tasks.redact import mask_url


@dataclass(frozen=True)
class SourceInfo:
    size: int
    identity: str  # changes when the bytes may have changed (size, mtime, inode / ETag)
    name: str  # a file name for the upload's multipart part


class Source(Protocol):
    description: str  # safe for logs and job records

    def info(self) -> SourceInfo: ...

    def blocks(self, start: int, length: int) -> Iterator[bytes]: ...


def open_source(source: str, allowed_roots: tuple[Path, ...], http: httpx.Client) -> Source:
    """The Source for a spec's ``source`` string; SourceError says what is wrong with it."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        return HttpSource(source, http)
    return LocalSource(_local_path(source), allowed_roots)


def check_local_source(source: str, allowed_roots: tuple[Path, ...]) -> None:
    """Refuse, at enqueue, a local source this machine can see is wrong: missing, not a regular
    file, or outside ``allowed_roots`` when those are known here (``SpecError`` naming ``source``).
    URLs are left alone; with no roots configured here only the file itself is checked."""
    scheme = urlsplit(source).scheme.lower()
    if scheme not in ("", "file"):
        return
    try:
        if allowed_roots:
            LocalSource(_local_path(source), allowed_roots).info()
        else:
            path = _local_path(source)
            LocalSource(path, (Path(path).resolve().parent,)).info()
    except SourceError as exc:
        raise SpecError("source", str(exc).removeprefix("source: ")) from None


def _local_path(source: str) -> str:
    parts = urlsplit(source)
    if parts.scheme.lower() != "file":
        return source
    if parts.netloc not in ("", "localhost"):
        raise SourceError(f"source: file:// URL names host {parts.netloc!r}; only local files work")
    return unquote(parts.path)


class LocalSource:
    """A regular file on storage every worker mounts, confined to the allowed roots."""

    def __init__(self, path: str, allowed_roots: tuple[Path, ...]) -> None:
        self.description = path
        if not os.path.isabs(path):
            raise SourceError(f"source: {path!r} is not an absolute path")
        if not allowed_roots:
            raise SourceError("source: local files are disabled: set VUQ_ALLOWED_ROOTS on the workers")
        try:
            resolved = Path(path).resolve(strict=True)
        except FileNotFoundError:
            raise SourceError(f"source: no such file: {path}") from None
        except OSError as exc:
            raise SourceError(f"source: cannot resolve {path}: {exc.strerror}") from None
        except (RuntimeError, ValueError) as exc:  # a symlink loop (Python < 3.13), a NUL byte
            raise SourceError(f"source: cannot resolve {path!r}: {exc}") from None
        if not any(resolved.is_relative_to(root) for root in allowed_roots):
            roots = ", ".join(map(str, allowed_roots))
            raise SourceError(f"source: {path} resolves to {resolved}, outside the allowed roots ({roots})")
        self.path = resolved

    def info(self) -> SourceInfo:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise SourceError(f"source: {self.description} no longer exists") from None
        if stat.S_ISDIR(st.st_mode):
            raise SourceError(f"source: {self.description} is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(f"source: {self.description} is not a regular file")
        if not os.access(self.path, os.R_OK):
            raise SourceError(f"source: {self.description} is not readable by the worker")
        return SourceInfo(st.st_size, f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}", self.path.name)

    def blocks(self, start: int, length: int) -> Iterator[bytes]:
        try:
            handle = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed in finally
        except OSError as exc:
            raise SourceError(f"source: cannot open {self.description}: {exc.strerror}") from None
        try:
            handle.seek(start)
            left = length
            while left:
                block = handle.read(min(STREAM_BLOCK_BYTES, left))
                if not block:
                    raise SourceError(f"source: {self.description} ended early; it changed during the upload")
                left -= len(block)
                yield block
        finally:
            handle.close()


class HttpSource:
    """An http(s) URL that answers byte-range GETs (a presigned object-store URL works)."""

    def __init__(self, url: str, http: httpx.Client) -> None:
        self.url = url
        self.http = http
        self.description = mask_url(url)

    def info(self) -> SourceInfo:
        with self._get(0, 1) as response:
            if response.status_code == 200:
                raise SourceError(f"source: {self.description} does not support Range requests "
                                  "(it answered 200 to a Range GET, not 206)")
            total = _content_range_total(response.headers.get("content-range", ""))
            if total is None:
                raise SourceError(f"source: {self.description} answered 206 without a total size")
            tag = response.headers.get("etag") or response.headers.get("last-modified") or ""
        name = os.path.basename(urlsplit(self.url).path) or "video"
        return SourceInfo(total, f"{total}:{tag}", unquote(name))

    def blocks(self, start: int, length: int) -> Iterator[bytes]:
        with self._get(start, length) as response:
            if response.status_code != 206:
                raise SourceError(f"source: {self.description} ignored the Range header ({response.status_code})")
            sent = 0
            try:
                for block in response.iter_raw(STREAM_BLOCK_BYTES):
                    sent += len(block)
                    yield block
            except httpx.TransportError as exc:
                raise SourceUnavailable(f"source: reading {self.description} failed: {type(exc).__name__}",
                                        reason="source") from None
            if sent != length:
                raise SourceUnavailable(f"source: {self.description} sent {sent} of {length} bytes",
                                        reason="source")

    def _get(self, start: int, length: int) -> _RangeResponse:
        return _RangeResponse(self, start, length)


class _RangeResponse:
    """Context manager for one Range GET, translating failures into our errors."""

    def __init__(self, source: HttpSource, start: int, length: int) -> None:
        self.source, self.start, self.length = source, start, length
        self._cm: object = None

    def __enter__(self) -> httpx.Response:
        headers = {"Range": f"bytes={self.start}-{self.start + self.length - 1}"}
        try:
            cm = self.source.http.stream("GET", self.source.url, headers=headers)
            response = cm.__enter__()
        except httpx.TransportError as exc:
            raise SourceUnavailable(f"source: cannot reach {self.source.description}: {type(exc).__name__}",
                                    reason="source") from None
        self._cm = cm
        if response.status_code >= 400:
            cm.__exit__(None, None, None)
            if is_retryable_status(response.status_code):
                raise SourceUnavailable(f"source: {self.source.description} answered {response.status_code}",
                                        reason="source")
            raise SourceError(f"source: {self.source.description} answered {response.status_code} "
                              f"{response.reason_phrase}")
        return response

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)  # type: ignore[attr-defined]


def _content_range_total(value: str) -> int | None:
    _, _, total = value.partition("/")
    return int(total) if total.strip().isdigit() else None
