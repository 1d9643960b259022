"""Byte-range sources: local files under the allowed roots, and http(s) URLs read with Range.

A step opens its source once (``with open_source(...) as source:``) and reads only what it opened:

* A local file is checked (resolved, and inside one of ``VUQ_ALLOWED_ROOTS``), then opened by
  walking the resolved path from its root one component at a time, each relative to the directory
  opened before it (``os.open(name, dir_fd=...)``, i.e. ``openat``) and with ``O_NOFOLLOW``: a
  component swapped for a symbolic link after the check is refused (``ELOOP``), not followed. The
  file itself is opened ``O_NONBLOCK`` (a FIFO swapped in does not block the worker in ``open``),
  ``fstat``-ed (a regular file, else ``SourceError``), and every byte is read from that descriptor
  (``os.pread``), never by path again. Its identity (size, mtime, device, inode) is what the job
  records at start; a later step whose file shows another one fails "changed since the job started".
* An http(s) source is asked for its first byte at each step: the total size and its validator
  (the ETag, else Last-Modified) make its identity. Every chunk's ``206`` must then name exactly
  the range asked for out of that total and carry the same validator, or the step fails
  (``SourceError``: the bytes changed, a retry would not help).

Both keep to ``SourceLimits``: a source over ``max_bytes`` is refused when its size is read, and
each chunk's reads are paced (``_Pace``): a chunk that waits on its source longer than
``chunk_deadline_s`` in all, or gets less than ``min_bytes_per_s`` over a ``window_s`` of waiting,
or waits a whole window for one read, fails with ``SourceStalled`` (retried with backoff, so the
step gives its slot back). Only time spent waiting on the source counts, not time spent sending to
api.video. An http read never waits past the next of those limits: the guarded client's
``deadline`` clamps every socket operation. A local ``pread`` cannot be interrupted; the pace is
checked after each block (a regular file on a local disk does not stall; see docs/security.md for
network filesystems).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import httpx

from tasks.constants import GIB, KIB, STREAM_BLOCK_BYTES
from tasks.errors import (
    LiveSizeError,
    SourceError,
    SourceMissing,
    SourceStalled,
    SourceUnavailable,
    SpecError,
    is_retryable_status,
)
from tasks.outbound.guarded_transport import deadline
from tasks.redact import mask_url
from tasks.telemetry import request as traced

T = TypeVar("T")
# api.video's limit on one video file: "The video file size is limited to 30 GiB" = 32,212,254,720 bytes.
MAX_SOURCE_BYTES = 30 * GIB
# Directories on the way to a local source: opened only as places to look up the next name (O_PATH needs
# no read permission, like path lookup), never through a symbolic link.
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
# The file: never through a symbolic link, and without blocking (a FIFO opens at once, to be refused).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_TIMED_OUT_SLACK_S = 0.05  # a timeout this close to the pace's own deadline is the pace's


@dataclass(frozen=True)
class SourceLimits:
    """What a worker accepts from a source (``VUQ_MAX_SOURCE_BYTES``, ``VUQ_SOURCE_*``); 0 turns one off."""

    max_bytes: int = MAX_SOURCE_BYTES  # a bigger source is refused when the job starts
    chunk_deadline_s: float = 900.0  # the longest one chunk may wait on its source, all reads together
    min_bytes_per_s: int = 64 * KIB  # the slowest pace a source may keep over any window of waiting
    window_s: float = 30.0  # that window; also the longest a single read may wait

    def check_size(self, size: int, description: str) -> None:
        """SourceError naming the size when ``size`` is over ``max_bytes``."""
        if self.max_bytes and size > self.max_bytes:
            raise SourceError(f"source: {description} is {size} bytes ({size / GIB:.2f} GiB), over the limit of "
                              f"{self.max_bytes} bytes ({self.max_bytes / GIB:.2f} GiB, VUQ_MAX_SOURCE_BYTES)")


@dataclass(frozen=True)
class SourceInfo:
    size: int
    identity: str  # changes when the bytes may have changed (size, mtime, device, inode / ETag)
    name: str  # a file name for the upload's multipart part
    legacy_identity: str | None = None  # how an older vuq wrote the same identity (jobs started before it)

    def same_source(self, recorded: str | None) -> bool:
        """Whether ``recorded`` (the identity the job noted when it started) names these same bytes."""
        return recorded is not None and recorded in (self.identity, self.legacy_identity)


class Source(Protocol):
    description: str  # safe for logs and job records

    def info(self) -> SourceInfo: ...

    def blocks(self, start: int, length: int) -> Iterator[bytes]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...


def open_source(source: str, allowed_roots: tuple[Path, ...], http: httpx.Client,
                limits: SourceLimits = SourceLimits(), growing: bool = False) -> Source:
    """The Source for a spec's ``source`` string, opened for one step (use it as a context manager);
    SourceError says what is wrong with it (``SourceMissing``: no such file). ``growing``: a local file
    still being written (a live job's)."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        return HttpSource(source, http, limits)
    return LocalSource(_local_path(source), allowed_roots, limits, growing=growing)


def check_local_source(source: str, allowed_roots: tuple[Path, ...], may_be_missing: bool = False) -> None:
    """Refuse, at enqueue, a local source this machine can see is wrong: missing (unless
    ``may_be_missing``: a live job's file may not exist yet), not a regular file, or outside
    ``allowed_roots`` when those are known here (``SpecError`` naming ``source``). URLs are left alone;
    with no roots configured here only the file itself is checked."""
    scheme = urlsplit(source).scheme.lower()
    if scheme not in ("", "file"):
        return
    try:
        path = _local_path(source)
        roots = allowed_roots or (Path(path).resolve().parent,)
        with LocalSource(path, roots, SourceLimits(max_bytes=0)) as local:
            local.info()
    except SourceError as exc:
        if may_be_missing and isinstance(exc, SourceMissing):
            return
        raise SpecError("source", str(exc).removeprefix("source: ")) from None


def _local_path(source: str) -> str:
    parts = urlsplit(source)
    if parts.scheme.lower() != "file":
        return source
    if parts.netloc not in ("", "localhost"):
        raise SourceError(f"source: file:// URL names host {parts.netloc!r}; only local files work")
    return unquote(parts.path)


# -- pacing one chunk's reads ------------------------------------------------------------------------
class _Pace:
    """How long one chunk (or one probe) has waited on its source, and whether that is still acceptable."""

    def __init__(self, limits: SourceLimits, description: str) -> None:
        self.limits, self.description = limits, description
        self.waited = 0.0  # seconds spent inside reads of the source
        self.got = 0  # bytes those reads returned
        self._marks: deque[tuple[float, int]] = deque([(0.0, 0)])  # (waited, got) after each read

    def budget_s(self) -> float | None:
        """How long the next read may wait: never past the chunk's deadline, never a whole window."""
        caps = []
        if self.limits.chunk_deadline_s:
            caps.append(self.limits.chunk_deadline_s - self.waited)
        if self.limits.min_bytes_per_s:
            caps.append(self.limits.window_s)
        return min(caps) if caps else None

    @contextmanager
    def waiting(self) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.waited += time.monotonic() - began

    def note(self, received: int) -> None:
        """Count what one read returned; SourceStalled when the pace is now unacceptable."""
        self.got += received
        self._marks.append((self.waited, self.got))
        limits = self.limits
        if limits.chunk_deadline_s and self.waited > limits.chunk_deadline_s:
            raise self._past_deadline()
        if limits.min_bytes_per_s and self.waited >= limits.window_s:
            window_began = self.waited - limits.window_s
            while len(self._marks) > 1 and self._marks[1][0] <= window_began:
                self._marks.popleft()
            recent = self.got - self._marks[0][1]
            if recent < limits.min_bytes_per_s * limits.window_s:
                raise SourceStalled(f"source: {self.description} sent {recent} bytes in {limits.window_s:g} s, "
                                    f"below the minimum of {limits.min_bytes_per_s} bytes/s "
                                    "(VUQ_SOURCE_MIN_BYTES_PER_S over VUQ_SOURCE_WINDOW_S)")

    def timed_out(self) -> SourceStalled:
        """The error for a read that waited all the pace allowed and got nothing."""
        if self.limits.chunk_deadline_s and self.waited >= self.limits.chunk_deadline_s - _TIMED_OUT_SLACK_S:
            return self._past_deadline()
        return SourceStalled(f"source: {self.description} sent nothing for {self.limits.window_s:g} s "
                             "(VUQ_SOURCE_WINDOW_S)")

    def _past_deadline(self) -> SourceStalled:
        return SourceStalled(f"source: {self.description} sent {self.got} bytes in "
                             f"{self.limits.chunk_deadline_s:g} s, and the chunk was not whole by its deadline "
                             "(VUQ_SOURCE_CHUNK_DEADLINE_S)")


# -- local files ---------------------------------------------------------------------------------------
class LocalSource:
    """A regular file on storage every worker mounts, confined to the allowed roots, opened once.
    ``growing``: a file still being written; its identity is the file itself (device and inode), and
    it may grow (never shrink below what a read needs) while a chunk is read."""

    def __init__(self, path: str, allowed_roots: tuple[Path, ...], limits: SourceLimits = SourceLimits(),
                 growing: bool = False) -> None:
        self.description = path
        self.limits = limits
        self.growing = growing
        self._fd = -1
        if not os.path.isabs(path):
            raise SourceError(f"source: {path!r} is not an absolute path")
        if not allowed_roots:
            raise SourceError("source: local files are disabled: set VUQ_ALLOWED_ROOTS on the workers")
        resolved = _resolved(path)
        root = next((r for r in allowed_roots if resolved.is_relative_to(r)), None)
        if root is None:
            roots = ", ".join(map(str, allowed_roots))
            raise SourceError(f"source: {path} resolves to {resolved}, outside the allowed roots ({roots})")
        self.path = resolved
        self._fd = _open_beneath(root, resolved.relative_to(root).parts, path)
        self._checked: os.stat_result | None = None
        self._regular(os.fstat(self._fd))

    def info(self) -> SourceInfo:
        st = self._regular(self._fstat())
        if st.st_nlink == 0:
            raise SourceError(f"source: {self.description} no longer exists")
        self.limits.check_size(st.st_size, self.description)
        self._checked = st
        if self.growing:
            return SourceInfo(st.st_size, f"file:{st.st_dev}:{st.st_ino}", self.path.name)
        return SourceInfo(st.st_size, f"{st.st_size}:{st.st_mtime_ns}:{st.st_dev}:{st.st_ino}", self.path.name,
                          legacy_identity=f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")

    def blocks(self, start: int, length: int) -> Iterator[bytes]:
        """``length`` bytes from ``start``, read from the descriptor opened at the start of the step."""
        before = self._checked or self._fstat()
        pace = _Pace(self.limits, self.description)
        offset, left = start, length
        while left:
            with pace.waiting():
                block = self._pread(min(STREAM_BLOCK_BYTES, left), offset)
            if not block:
                if self.growing:
                    raise LiveSizeError(f"live: the file shrank below {offset} bytes while a part was read; "
                                        "the parts sent are kept")
                raise SourceError(f"source: {self.description} ended early; it changed during the upload")
            pace.note(len(block))
            offset += len(block)
            left -= len(block)
            yield block
        after = self._fstat()
        if self.growing:  # written to meanwhile is its nature; shorter than what was read is not
            if after.st_size < start + length:
                raise LiveSizeError(f"live: the file shrank to {after.st_size} bytes while a part was read "
                                    f"({start + length} were read); the parts sent are kept")
        elif (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise SourceError(f"source: {self.description} changed during the upload "
                              f"(was {before.st_size} bytes, now {after.st_size})")

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> LocalSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a source not used as a context manager still gives its descriptor back
        self.close()

    def _regular(self, st: os.stat_result) -> os.stat_result:
        if stat.S_ISREG(st.st_mode):
            return st
        self.close()
        if stat.S_ISDIR(st.st_mode):
            raise SourceError(f"source: {self.description} is a directory, not a file")
        raise SourceError(f"source: {self.description} is not a regular file")

    def _fstat(self) -> os.stat_result:
        if self._fd < 0:
            raise SourceError(f"source: {self.description} is closed")  # a bug: used outside its step
        return os.fstat(self._fd)

    def _pread(self, size: int, offset: int) -> bytes:
        try:
            return os.pread(self._fd, size, offset)
        except OSError as exc:
            raise SourceUnavailable(f"source: reading {self.description} failed: {exc.strerror}",
                                    reason="source") from None


def _resolved(path: str) -> Path:
    """``path`` with every symbolic link resolved (the check; ``_open_beneath`` then opens it)."""
    try:
        return Path(path).resolve(strict=True)
    except FileNotFoundError:
        raise SourceMissing(f"source: no such file: {path}") from None
    except OSError as exc:
        raise SourceError(f"source: cannot resolve {path}: {exc.strerror}") from None
    except (RuntimeError, ValueError) as exc:  # a symlink loop (Python < 3.13), a NUL byte
        raise SourceError(f"source: cannot resolve {path!r}: {exc}") from None


def _open_beneath(root: Path, names: tuple[str, ...], shown: str) -> int:
    """Open ``root/names...`` for reading, one component at a time, each relative to the directory
    before it and none through a symbolic link (what ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``
    does in one call on Linux ≥ 5.6, which Python does not bind). The file is opened ``O_NONBLOCK``."""
    try:
        where = os.open(root, _ROOT_FLAGS)
    except OSError as exc:
        raise SourceError(f"source: cannot open the allowed root {root}: {exc.strerror}") from None
    try:
        for depth, name in enumerate(names):
            last = depth == len(names) - 1
            try:
                opened = os.open(name, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=where)
            except OSError as exc:
                raise _open_error(exc, shown, root.joinpath(*names[:depth + 1]), last) from None
            os.close(where)
            where = opened
        if not names:  # the root itself was named: opened as a directory, refused as one by fstat
            opened = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            os.close(where)
            where = opened
        opened, where = where, -1
        return opened
    finally:
        if where >= 0:
            os.close(where)


def _open_error(exc: OSError, shown: str, component: Path, last: bool) -> SourceError:
    if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and _is_symlink(component)):
        # O_NOFOLLOW: a link as the file is ELOOP; with O_PATH | O_DIRECTORY a link as a directory is ENOTDIR
        return SourceError(f"source: {shown} changed after it was checked: {component} is now a symbolic link, "
                           "which vuq does not follow")
    if exc.errno == errno.ENOTDIR:
        return SourceError(f"source: {shown} changed after it was checked: {component} is no longer a directory")
    if exc.errno == errno.ENOENT:
        return SourceMissing(f"source: no such file: {shown} ({component} vanished after it was checked)")
    if exc.errno == errno.ENXIO:  # a UNIX socket, or a device without its driver
        return SourceError(f"source: {shown} is not a regular file")
    if exc.errno in (errno.EACCES, errno.EPERM) and last:
        return SourceError(f"source: {shown} is not readable by the worker")
    return SourceError(f"source: cannot open {shown}: {exc.strerror}")


def _is_symlink(path: Path) -> bool:
    """For the message only (the refusal does not depend on it): is ``path`` a symbolic link now?"""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


# -- http(s) URLs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Expected:
    """What every answer of an http source must agree with: its total size and its validator."""

    total: int
    validator: str  # "etag", "last-modified", or "" when the source gives neither
    value: str


class HttpSource:
    """An http(s) URL that answers byte-range GETs (a presigned object-store URL works)."""

    def __init__(self, url: str, http: httpx.Client, limits: SourceLimits = SourceLimits()) -> None:
        self.url = url
        self.http = http
        self.limits = limits
        self.description = mask_url(url)
        self._expected: _Expected | None = None

    def info(self) -> SourceInfo:
        with self._get(0, 1, _Pace(self.limits, self.description)) as response:
            if response.status_code == 200:
                raise SourceError(f"source: {self.description} does not support Range requests "
                                  "(it answered 200 to a Range GET, not 206)")
            answered = _content_range(response.headers.get("content-range", ""))
            if answered is None:
                raise SourceError(f"source: {self.description} answered 206 without a total size")
            validator, value = _validator(response.headers)
        total = answered[2]
        self.limits.check_size(total, self.description)
        self._expected = _Expected(total, validator, value)
        name = os.path.basename(urlsplit(self.url).path) or "video"
        return SourceInfo(total, f"{total}:{value}", unquote(name))

    def blocks(self, start: int, length: int) -> Iterator[bytes]:
        """``length`` bytes from ``start``, in blocks of at most STREAM_BLOCK_BYTES, from an answer that
        names exactly that range of the same bytes ``info`` saw."""
        expected = self._expected
        if expected is None:
            self.info()
            expected = self._expected
        assert expected is not None
        pace = _Pace(self.limits, self.description)
        with self._get(start, length, pace) as response:
            if response.status_code != 206:
                raise SourceError(f"source: {self.description} ignored the Range header ({response.status_code})")
            self._check_answer(response, start, length, expected)
            yield from self._body(response, length, pace)

    def close(self) -> None:
        """Nothing is held between requests (the pooled client belongs to the worker process)."""

    def __enter__(self) -> HttpSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_answer(self, response: httpx.Response, start: int, length: int, expected: _Expected) -> None:
        asked = (start, start + length - 1, expected.total)
        answered = _content_range(response.headers.get("content-range", ""))
        if answered != asked:
            shown = response.headers.get("content-range", "(none)")[:100]
            raise SourceError(f"source: {self.description} answered Content-Range {shown!r} when asked for "
                              f"bytes {asked[0]}-{asked[1]}/{asked[2]}: it changed since the job started")
        if expected.validator:
            now = response.headers.get(expected.validator)
            if now != expected.value:
                raise SourceError(f"source: {self.description} changed since the job started (its "
                                  f"{expected.validator} was {expected.value[:100]!r}, now {(now or '')[:100]!r})")
        declared = response.headers.get("content-length")
        if declared is not None and declared.strip() != str(length):
            raise SourceError(f"source: {self.description} announced {declared[:30]!r} bytes for a range of {length}")

    def _body(self, response: httpx.Response, length: int, pace: _Pace) -> Iterator[bytes]:
        """The answer's bytes in blocks of up to STREAM_BLOCK_BYTES, each read paced and bounded."""
        pieces = response.iter_raw()
        buffer, sent = bytearray(), 0
        while True:
            piece = self._read(pace, lambda: next(pieces, None), f"reading {self.description} failed")
            if piece is None:
                break
            if sent + len(buffer) + len(piece) > length:
                raise SourceError(f"source: {self.description} sent more than the {length} bytes it announced")
            buffer += piece
            pace.note(len(piece))
            while len(buffer) >= STREAM_BLOCK_BYTES:
                with memoryview(buffer) as view:
                    block = bytes(view[:STREAM_BLOCK_BYTES])  # one copy; the view is gone before the del
                del buffer[:STREAM_BLOCK_BYTES]
                sent += len(block)
                yield block
        if buffer:
            yield bytes(buffer)
            sent += len(buffer)
        if sent != length:
            raise SourceUnavailable(f"source: {self.description} sent {sent} of {length} bytes", reason="source")

    def _read(self, pace: _Pace, step: Callable[[], T], failure: str) -> T:
        """Run one network step of this source, waiting at most what ``pace`` allows; its errors are
        SourceStalled (the pace's limit), or SourceUnavailable ``"source: <failure>: <httpx error>"``."""
        budget = pace.budget_s()
        at = None if budget is None else time.monotonic() + max(0.0, budget)
        try:
            with pace.waiting(), deadline(at):
                return step()
        except httpx.TimeoutException as exc:
            if at is not None and time.monotonic() >= at - _TIMED_OUT_SLACK_S:
                raise pace.timed_out() from None
            raise SourceUnavailable(f"source: {failure}: {type(exc).__name__}", reason="source") from None
        except httpx.TransportError as exc:
            raise SourceUnavailable(f"source: {failure}: {type(exc).__name__}", reason="source") from None

    @contextmanager
    def _get(self, start: int, length: int, pace: _Pace) -> Iterator[httpx.Response]:
        """One Range GET, its answer streamed; failures translated into our errors."""
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        request = self.http.build_request("GET", self.url, headers=headers)
        with traced("source", "GET", self.description) as call:  # the URL masked: no query, no user info
            response = self._read(pace, lambda: self.http.send(request, stream=True),
                                  f"cannot reach {self.description}")
            call.answered(response.status_code, _length(response.headers.get("content-length")))
            try:
                if response.status_code >= 400:
                    if is_retryable_status(response.status_code):
                        raise SourceUnavailable(f"source: {self.description} answered {response.status_code}",
                                                reason="source")
                    raise SourceError(f"source: {self.description} answered {response.status_code} "
                                      f"{response.reason_phrase}")
                yield response
            finally:
                response.close()


def _content_range(value: str) -> tuple[int, int, int] | None:
    """``bytes first-last/total`` as three numbers; None for anything else (``*``, missing parts, junk)."""
    unit, _, spec = value.strip().partition(" ")
    span, _, total = spec.partition("/")
    first, _, last = span.partition("-")
    numbers = (first.strip(), last.strip(), total.strip())
    if unit.lower() != "bytes" or not all(n.isascii() and n.isdigit() and len(n) <= 20 for n in numbers):
        return None
    return int(numbers[0]), int(numbers[1]), int(numbers[2])


def _length(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() else None


def _validator(headers: httpx.Headers) -> tuple[str, str]:
    """The validator an http source's bytes are recognised by: the ETag, else Last-Modified."""
    for name in ("etag", "last-modified"):
        value = headers.get(name)
        if value:
            return name, value
    return "", ""
