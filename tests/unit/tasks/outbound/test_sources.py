"""tasks.outbound.sources: local files confined to the allowed roots, read by byte range."""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from tasks.errors import ConfigError, LiveSizeError, SourceError, SourceStalled, SourceUnavailable
from tasks.outbound import sources
from tasks.outbound.address_policy import NetPolicy, parse_allowed_nets
from tasks.outbound.guarded_transport import guarded_client
from tasks.outbound.sources import MAX_SOURCE_BYTES, HttpSource, LocalSource, SourceLimits, open_source
from tasks.settings import Settings
from tests.support.hostile import hostile_source
from tests.support.httpd import serve
from tests.support.range_server import serving


@pytest.fixture
def video(root: Path) -> Path:
    path = root / "clip.mp4"
    path.write_bytes(bytes(range(256)) * 16)  # 4096 bytes
    return path


def refused(path: str, roots: tuple[Path, ...]) -> str:
    with pytest.raises(SourceError) as info:
        LocalSource(path, roots)
    return str(info.value)


def test_a_file_under_the_root(video: Path, root: Path) -> None:
    source = LocalSource(str(video), (root,))
    info = source.info()
    assert (info.size, info.name) == (4096, "clip.mp4")
    assert source.description == str(video)


@pytest.mark.parametrize(("start", "length"), [(0, 4096), (0, 1), (100, 1000), (4095, 1)])
def test_blocks_are_exactly_the_requested_range(video: Path, root: Path, start: int, length: int) -> None:
    data = b"".join(LocalSource(str(video), (root,)).blocks(start, length))
    assert data == video.read_bytes()[start:start + length]


def test_blocks_are_at_most_a_stream_block(video: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tasks.outbound.sources.STREAM_BLOCK_BYTES", 1000)
    blocks = list(LocalSource(str(video), (root,)).blocks(0, 4096))
    assert [len(b) for b in blocks] == [1000, 1000, 1000, 1000, 96]


def test_a_range_past_the_end_means_the_file_changed(video: Path, root: Path) -> None:
    with pytest.raises(SourceError, match="ended early"):
        b"".join(LocalSource(str(video), (root,)).blocks(4000, 200))


def test_a_file_outside_the_roots_is_refused_and_the_roots_named(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    message = refused(str(outside), (root,))
    assert "outside the allowed roots" in message and str(root) in message


def test_dot_dot_out_of_the_root_is_refused(tmp_path: Path, root: Path) -> None:
    (tmp_path / "secret.mp4").write_bytes(b"x")
    assert "outside the allowed roots" in refused(f"{root}/../secret.mp4", (root,))


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path, root: Path) -> None:
    target = tmp_path / "secret.mp4"
    target.write_bytes(b"x")
    (root / "link.mp4").symlink_to(target)
    assert "outside the allowed roots" in refused(str(root / "link.mp4"), (root,))


def test_a_sibling_directory_with_a_common_prefix_is_outside(tmp_path: Path, root: Path) -> None:
    sibling = tmp_path / "videos-other"
    sibling.mkdir()
    (sibling / "v.mp4").write_bytes(b"x")
    assert "outside the allowed roots" in refused(str(sibling / "v.mp4"), (root,))


def test_a_symlink_inside_the_root_is_fine(video: Path, root: Path) -> None:
    (root / "alias.mp4").symlink_to(video)
    assert LocalSource(str(root / "alias.mp4"), (root,)).info().size == 4096


def test_any_of_several_roots(tmp_path: Path, video: Path, root: Path) -> None:
    assert LocalSource(str(video), (tmp_path / "elsewhere", root)).info().size == 4096


def test_a_missing_file(root: Path) -> None:
    assert "no such file" in refused(str(root / "missing.mp4"), (root,))


def test_a_relative_path(root: Path) -> None:
    assert "not an absolute path" in refused("videos/clip.mp4", (root,))


def test_no_roots_configured_points_at_the_setting(video: Path) -> None:
    assert "VUQ_ALLOWED_ROOTS" in refused(str(video), ())


def test_a_directory_is_not_a_file(root: Path) -> None:
    (root / "dir").mkdir()
    with pytest.raises(SourceError, match="is a directory"):
        LocalSource(str(root / "dir"), (root,)).info()


def test_a_file_deleted_after_opening(video: Path, root: Path) -> None:
    source = LocalSource(str(video), (root,))
    video.unlink()
    with pytest.raises(SourceError, match="no longer exists"):
        source.info()


def test_identity_changes_when_the_file_is_rewritten(video: Path, root: Path) -> None:
    source = LocalSource(str(video), (root,))
    before = source.info().identity
    assert source.info().identity == before
    video.write_bytes(b"new bytes")
    assert source.info().identity != before


def test_identity_changes_with_mtime_alone(video: Path, root: Path) -> None:
    source = LocalSource(str(video), (root,))
    before = source.info().identity
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert source.info().identity != before


def test_open_source_reads_file_urls(video: Path, root: Path) -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(500))) as http:
        source = open_source(f"file://{video}", (root,), http)
        plain = open_source(str(video), (root,), http)
    assert isinstance(source, LocalSource) and isinstance(plain, LocalSource)
    assert source.info().size == plain.info().size == 4096


def test_open_source_file_url_with_escapes(root: Path) -> None:
    (root / "my clip.mp4").write_bytes(b"abc")
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(500))) as http:
        source = open_source(f"file://localhost{root}/my%20clip.mp4", (root,), http)
    assert source.info().name == "my clip.mp4"


def test_open_source_refuses_a_remote_file_host(root: Path) -> None:
    with (httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(500))) as http,
          pytest.raises(SourceError, match="only local files")):
        open_source("file://fileserver/videos/v.mp4", (root,), http)


# -- opened once: the check and the open cannot be told apart by a swap between them -----------------
SECRET_BYTES = b"AWS_SECRET_ACCESS_KEY=do-not-upload\n" * 8


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the allowed root that must never be read (think /proc/self/environ)."""
    path = tmp_path / "outside" / "environ"
    path.parent.mkdir()
    path.write_bytes(SECRET_BYTES)
    return path


def swap_after_the_check(monkeypatch: pytest.MonkeyPatch, swap: Callable[[Path], None]) -> list[Path]:
    """Let the check (resolving the path) run, then do ``swap`` before the source is opened: the
    window an attacker with write access to an allowed root aims at."""
    real = sources._resolved
    checked: list[Path] = []

    def check_then_swap(path: str) -> Path:
        resolved = real(path)
        checked.append(resolved)
        swap(resolved)
        return resolved

    monkeypatch.setattr(sources, "_resolved", check_then_swap)
    return checked


def opened_within(seconds: float, open_it: Callable[[], object]) -> BaseException | object:
    """Run ``open_it`` in a thread; fail the test if it has not returned within ``seconds`` (it blocked)."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(open_it())
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"opening the source blocked for more than {seconds} s"
    return outcome[0]


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused(video: Path, root: Path, secret: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def to_symlink(path: Path) -> None:
        path.unlink()
        path.symlink_to(secret)

    checked = swap_after_the_check(monkeypatch, to_symlink)
    with pytest.raises(SourceError, match="is now a symbolic link, which vuq does not follow"):
        LocalSource(str(video), (root,))
    assert checked == [video] and video.is_symlink()  # the swap did happen between check and open


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(root: Path, secret: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "talks").mkdir()
    (root / "talks" / "environ").write_bytes(b"an innocent video")

    def dir_to_symlink(path: Path) -> None:
        shutil.rmtree(root / "talks")
        (root / "talks").symlink_to(secret.parent, target_is_directory=True)

    swap_after_the_check(monkeypatch, dir_to_symlink)
    with pytest.raises(SourceError, match=r"talks is now a symbolic link"):
        LocalSource(str(root / "talks" / "environ"), (root,))


def test_a_file_swapped_for_a_fifo_after_the_check_is_refused_without_blocking(
        video: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def to_fifo(path: Path) -> None:
        path.unlink()
        os.mkfifo(path)

    swap_after_the_check(monkeypatch, to_fifo)
    outcome = opened_within(5.0, lambda: LocalSource(str(video), (root,)))
    assert isinstance(outcome, SourceError) and "is not a regular file" in str(outcome), outcome


def test_a_fifo_named_directly_is_refused_without_blocking(root: Path) -> None:
    os.mkfifo(root / "pipe.mp4")
    outcome = opened_within(5.0, lambda: LocalSource(str(root / "pipe.mp4"), (root,)))
    assert isinstance(outcome, SourceError) and "is not a regular file" in str(outcome), outcome


def test_a_unix_socket_is_not_a_regular_file(root: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "s.mp4"))
        with pytest.raises(SourceError, match="is not a regular file"):
            LocalSource(str(root / "s.mp4"), (root,))


def test_bytes_come_from_what_was_opened_whatever_the_path_becomes(video: Path, root: Path, secret: Path) -> None:
    original = video.read_bytes()
    with LocalSource(str(video), (root,)) as source:
        identity = source.info().identity
        video.unlink()
        video.symlink_to(secret)  # swapped after the open: too late
        assert b"".join(source.blocks(0, 4096)) == original
    with pytest.raises(SourceError, match="outside the allowed roots"):  # the next step checks again
        LocalSource(str(video), (root,))
    video.unlink()
    video.write_bytes(original)  # the same bytes in another file: not the file the job started with
    with LocalSource(str(video), (root,)) as again:
        assert not again.info().same_source(identity)


def test_a_file_renamed_over_keeps_the_opened_bytes_and_the_next_step_sees_the_change(video: Path,
                                                                                    root: Path) -> None:
    original = video.read_bytes()
    with LocalSource(str(video), (root,)) as source:
        identity = source.info().identity
        (root / "new.mp4").write_bytes(b"z" * 4096)
        os.replace(root / "new.mp4", video)
        assert b"".join(source.blocks(0, 4096)) == original
    with LocalSource(str(video), (root,)) as later:
        info = later.info()
    assert info.size == 4096 and not info.same_source(identity)


def test_the_identity_holds_size_mtime_device_and_inode(video: Path, root: Path) -> None:
    st = video.stat()
    with LocalSource(str(video), (root,)) as source:
        info = source.info()
    assert info.identity == f"{st.st_size}:{st.st_mtime_ns}:{st.st_dev}:{st.st_ino}"
    assert info.same_source(info.identity)
    assert info.same_source(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")  # what jobs started before recorded
    assert not info.same_source(f"{st.st_size}:{st.st_mtime_ns}:{st.st_dev + 1}:{st.st_ino}")
    assert not info.same_source(None)


def test_a_source_is_a_context_manager_that_closes_its_descriptor(video: Path, root: Path) -> None:
    with LocalSource(str(video), (root,)) as source:
        fd = source._fd
        assert os.fstat(fd).st_ino == video.stat().st_ino
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    with pytest.raises(SourceError, match="is closed"):
        source.info()


def test_a_refused_source_leaves_no_descriptor_open(root: Path) -> None:
    (root / "dir.mp4").mkdir()
    os.mkfifo(root / "fifo.mp4")
    before = len(os.listdir("/proc/self/fd"))
    for name in ("dir.mp4", "fifo.mp4", "missing.mp4"):
        with pytest.raises(SourceError):
            LocalSource(str(root / name), (root,))
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_file_modified_in_place_during_a_chunk_fails_it(video: Path, root: Path) -> None:
    with LocalSource(str(video), (root,)) as source:
        source.info()
        blocks = source.blocks(0, 4096)
        next(blocks)
        with open(video, "r+b") as handle:
            handle.write(b"tampered")
        os.utime(video, ns=(0, video.stat().st_mtime_ns + 1_000_000_000))
        with pytest.raises(SourceError, match="changed during the upload"):
            list(blocks)


def test_an_unreadable_file_is_named_so(video: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def refusing(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if path == video.name:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sources.os, "open", refusing)
    with pytest.raises(SourceError, match="is not readable by the worker"):
        LocalSource(str(video), (root,))


# -- limits: size and pace ---------------------------------------------------------------------------
def test_a_source_over_the_size_limit_is_refused_naming_its_size(video: Path, root: Path) -> None:
    with LocalSource(str(video), (root,), SourceLimits(max_bytes=4095)) as source, \
            pytest.raises(SourceError, match=r"is 4096 bytes .*over the limit of 4095 bytes .*VUQ_MAX_SOURCE_BYTES"):
        source.info()
    with LocalSource(str(video), (root,), SourceLimits(max_bytes=4096)) as exact:
        assert exact.info().size == 4096


def test_the_default_size_limit_is_api_videos_30_gib() -> None:
    assert SourceLimits().max_bytes == MAX_SOURCE_BYTES == 30 * 1024**3 == 32_212_254_720


def slow_pread(monkeypatch: pytest.MonkeyPatch, seconds: float, size: int | None = None) -> None:
    real = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        time.sleep(seconds)
        return real(fd, n if size is None else min(n, size), offset)

    monkeypatch.setattr(sources.os, "pread", pread)


def test_a_local_source_below_the_minimum_pace_stalls(video: Path, root: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    slow_pread(monkeypatch, 0.02, size=10)  # 500 bytes/s
    limits = SourceLimits(min_bytes_per_s=1000, window_s=0.3, chunk_deadline_s=0)
    with LocalSource(str(video), (root,), limits) as source, \
            pytest.raises(SourceStalled, match=r"sent \d+ bytes in 0.3 s, below the minimum of 1000 bytes/s") as info:
        list(source.blocks(0, 4096))
    assert info.value.reason == "source_stalled" and isinstance(info.value, SourceUnavailable)


def test_a_local_source_past_the_chunk_deadline_stalls(video: Path, root: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    slow_pread(monkeypatch, 0.05, size=100)
    limits = SourceLimits(min_bytes_per_s=0, chunk_deadline_s=0.3)
    with LocalSource(str(video), (root,), limits) as source, \
            pytest.raises(SourceStalled, match=r"not whole by its deadline \(VUQ_SOURCE_CHUNK_DEADLINE_S\)"):
        list(source.blocks(0, 4096))


def test_time_the_consumer_takes_does_not_count_against_the_source(video: Path, root: Path) -> None:
    limits = SourceLimits(min_bytes_per_s=1 << 30, window_s=0.05, chunk_deadline_s=0.1)
    with LocalSource(str(video), (root,), limits) as source:
        got = b""
        for block in source.blocks(0, 4096):
            time.sleep(0.2)  # api.video is slow to take it: the source is not
            got += block
    assert got == video.read_bytes()


def test_zero_turns_the_pace_limits_off(video: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow_pread(monkeypatch, 0.01, size=64)
    limits = SourceLimits(min_bytes_per_s=0, chunk_deadline_s=0, window_s=0.001)
    with LocalSource(str(video), (root,), limits) as source:
        assert b"".join(source.blocks(0, 4096)) == video.read_bytes()


# -- http sources: every answer checked, every read bounded --------------------------------------------
# Real sockets on 127.0.0.1 (the hostile peers of tests/support), through the SSRF-guarded client.
FAST = SourceLimits(min_bytes_per_s=64 * 1024, window_s=0.5, chunk_deadline_s=3.0)
CHUNK = 1 << 20


@pytest.fixture
def guarded() -> Iterator[httpx.Client]:
    policy = NetPolicy(parse_allowed_nets("127.0.0.0/8"))
    with guarded_client(policy, httpx.Timeout(30.0, connect=5.0), httpx.Limits()) as client:
        yield client


@pytest.fixture
def remote(root: Path) -> Path:
    path = root / "remote.mp4"
    path.write_bytes(random.Random(3).randbytes(3 * CHUNK + 17))
    return path


def read_chunk(url: str, http: httpx.Client, start: int, length: int, limits: SourceLimits = FAST) -> bytes:
    with HttpSource(url, http, limits) as source:
        source.info()
        return b"".join(source.blocks(start, length))


def test_an_honest_http_source_is_read_in_blocks_of_at_most_a_mebibyte(remote: Path, root: Path,
                                                                      guarded: httpx.Client) -> None:
    with serving(root) as base, HttpSource(f"{base}/{remote.name}?X-Amz-Signature=s", guarded, FAST) as source:
        info = source.info()
        blocks = list(source.blocks(CHUNK - 5, 2 * CHUNK + 10))
    assert info.size == remote.stat().st_size
    assert b"".join(blocks) == remote.read_bytes()[CHUNK - 5:3 * CHUNK + 5]
    assert max(map(len, blocks)) <= CHUNK and len(blocks) >= 3


def test_an_http_source_that_trickles_stalls_within_its_window(remote: Path, root: Path,
                                                               guarded: httpx.Client) -> None:
    with hostile_source(root, "trickle", interval_s=0.05) as peer:
        began = time.monotonic()
        with pytest.raises(SourceStalled, match=r"sent \d+ bytes in 0.5 s, below the minimum") as info:
            read_chunk(f"{peer.url}/{remote.name}", guarded, 0, CHUNK)
        assert time.monotonic() - began < 3.0
    assert info.value.reason == "source_stalled" and "\n" not in str(info.value)


def test_an_http_source_that_never_answers_stalls_after_one_window(remote: Path, root: Path,
                                                                   guarded: httpx.Client) -> None:
    with hostile_source(root, "silent") as peer:
        began = time.monotonic()
        with pytest.raises(SourceStalled, match=r"sent nothing for 0.5 s \(VUQ_SOURCE_WINDOW_S\)"):
            read_chunk(f"{peer.url}/{remote.name}", guarded, 0, CHUNK)
        assert time.monotonic() - began < 2.0


def test_an_http_source_that_never_answers_the_probe_stalls_too(remote: Path, root: Path,
                                                                guarded: httpx.Client) -> None:
    with hostile_source(root, "silent", honest=0) as peer, pytest.raises(SourceStalled, match="sent nothing"):
        HttpSource(f"{peer.url}/{remote.name}", guarded, FAST).info()


def test_the_chunk_deadline_cuts_a_source_that_keeps_the_minimum_pace(remote: Path, root: Path,
                                                                      guarded: httpx.Client) -> None:
    limits = SourceLimits(min_bytes_per_s=1, window_s=0.5, chunk_deadline_s=1.0)
    with hostile_source(root, "trickle", interval_s=0.02) as peer:
        began = time.monotonic()
        with pytest.raises(SourceStalled, match=r"not whole by its deadline"):
            read_chunk(f"{peer.url}/{remote.name}", guarded, 0, CHUNK, limits)
        assert time.monotonic() - began < 2.5


def test_an_answer_for_another_range_is_a_changed_source(remote: Path, root: Path, guarded: httpx.Client) -> None:
    with hostile_source(root, "wrong-range") as peer, \
            pytest.raises(SourceError, match=r"answered Content-Range 'bytes 1-1048576/\d+' when asked for "
                                             r"bytes 0-1048575/\d+: it changed since the job started"):
        read_chunk(f"{peer.url}/{remote.name}", guarded, 0, CHUNK)


def test_another_etag_is_a_changed_source(remote: Path, root: Path, guarded: httpx.Client) -> None:
    with hostile_source(root, "changed-etag") as peer, \
            pytest.raises(SourceError, match=r"changed since the job started \(its etag was '\"v1\"', now "):
        read_chunk(f"{peer.url}/{remote.name}", guarded, 0, CHUNK)


def test_without_an_etag_last_modified_recognises_the_bytes(remote: Path, guarded: httpx.Client) -> None:
    """A server that sends no ETag: Last-Modified is the validator, and a chunk answered under another one
    is a changed source."""
    data = remote.read_bytes()
    stamps = ["Mon, 30 Nov 2026 10:00:00 GMT"] * 2 + ["Tue, 01 Dec 2026 10:00:00 GMT"]

    class NoEtag(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            first, last = (int(n) for n in re.findall(r"\d+", self.headers["Range"]))
            last = min(last, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Last-Modified", stamps.pop(0) if len(stamps) > 1 else stamps[0])
            self.end_headers()
            self.wfile.write(data[first:last + 1])

        def log_message(self, *args: object) -> None:
            pass

    with serve(NoEtag) as base, HttpSource(f"{base}/{remote.name}", guarded, FAST) as source:
        source.info()  # the probe: Monday
        assert b"".join(source.blocks(0, CHUNK)) == data[:CHUNK]  # Monday again: the same bytes
        with pytest.raises(SourceError, match=r"changed since the job started \(its last-modified was 'Mon, 30 Nov"):
            b"".join(source.blocks(CHUNK, CHUNK))  # Tuesday: replaced


def test_more_bytes_than_the_range_is_refused_before_they_are_passed_on(remote: Path, root: Path,
                                                                        guarded: httpx.Client) -> None:
    with hostile_source(root, "too-long") as peer, HttpSource(f"{peer.url}/{remote.name}", guarded, FAST) as source:
        source.info()
        passed = 0
        with pytest.raises(SourceError, match="sent more than"):
            for block in source.blocks(0, 1000):
                passed += len(block)
    assert passed == 0  # nothing past the range reached the upload


def test_a_changed_source_is_not_retried(remote: Path, root: Path, guarded: httpx.Client) -> None:
    with hostile_source(root, "changed-etag") as peer, pytest.raises(SourceError) as info:
        read_chunk(f"{peer.url}/{remote.name}", guarded, 0, CHUNK)
    assert not isinstance(info.value, SourceUnavailable) and info.value.reason == "bad_source"


def test_an_http_source_over_the_size_limit_is_refused_at_its_probe(remote: Path, root: Path,
                                                                    guarded: httpx.Client) -> None:
    size = remote.stat().st_size
    with serving(root) as base, pytest.raises(SourceError, match=rf"is {size} bytes .*over the limit of 1000 bytes"):
        HttpSource(f"{base}/{remote.name}", guarded, SourceLimits(max_bytes=1000)).info()


def test_httpx_own_shorter_timeout_still_applies(remote: Path, root: Path) -> None:
    policy = NetPolicy(parse_allowed_nets("127.0.0.0/8"))
    limits = SourceLimits(min_bytes_per_s=0, chunk_deadline_s=0)  # no pace: only httpx's read timeout
    with hostile_source(root, "silent") as peer, \
            guarded_client(policy, httpx.Timeout(0.3, connect=5.0), httpx.Limits()) as client:
        began = time.monotonic()
        with pytest.raises(SourceUnavailable, match="ReadTimeout") as info:
            read_chunk(f"{peer.url}/{remote.name}", client, 0, CHUNK, limits)
        assert not isinstance(info.value, SourceStalled) and time.monotonic() - began < 2.0


@pytest.mark.parametrize(("header", "parsed"), [
    ("bytes 0-9/10", (0, 9, 10)), ("bytes 5-5/6", (5, 5, 6)), ("BYTES 1-2/3", (1, 2, 3)),
    ("bytes */10", None), ("bytes 0-9/*", None), ("bytes 0-9", None), ("", None), ("items 0-9/10", None),
    ("bytes -1-9/10", None), ("bytes \u0660-\u0669/\u0661\u0660", None), ("bytes 0-9/" + "9" * 30, None),
])
def test_content_range_parsing(header: str, parsed: tuple[int, int, int] | None) -> None:
    assert sources._content_range(header) == parsed


# -- the limits come from the workers' settings ----------------------------------------------------------
def test_source_limits_are_read_from_the_environment() -> None:
    assert Settings().source_limits == SourceLimits() == SourceLimits(32_212_254_720, 900.0, 65_536, 30.0)
    settings = Settings.from_env({"VUQ_MAX_SOURCE_BYTES": "20GiB", "VUQ_SOURCE_CHUNK_DEADLINE_S": "120",
                                  "VUQ_SOURCE_MIN_BYTES_PER_S": "1MiB", "VUQ_SOURCE_WINDOW_S": "10"})
    assert settings.source_limits == SourceLimits(20 * 1024**3, 120.0, 1024**2, 10.0)
    off = Settings.from_env({"VUQ_MAX_SOURCE_BYTES": "0", "VUQ_SOURCE_CHUNK_DEADLINE_S": "0",
                             "VUQ_SOURCE_MIN_BYTES_PER_S": "0", "VUQ_SOURCE_WINDOW_S": "0"})
    assert off.source_limits == SourceLimits(0, 0.0, 0, 0.0)


@pytest.mark.parametrize(("env", "named"), [
    ({"VUQ_MAX_SOURCE_BYTES": "lots"}, "VUQ_MAX_SOURCE_BYTES"),
    ({"VUQ_MAX_SOURCE_BYTES": "-1"}, "VUQ_MAX_SOURCE_BYTES"),
    ({"VUQ_SOURCE_CHUNK_DEADLINE_S": "-5"}, "VUQ_SOURCE_CHUNK_DEADLINE_S"),
    ({"VUQ_SOURCE_CHUNK_DEADLINE_S": "nan"}, "VUQ_SOURCE_CHUNK_DEADLINE_S"),
    ({"VUQ_SOURCE_MIN_BYTES_PER_S": "fast"}, "VUQ_SOURCE_MIN_BYTES_PER_S"),
    ({"VUQ_SOURCE_WINDOW_S": "0"}, "VUQ_SOURCE_WINDOW_S"),
])
def test_bad_source_limits_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_a_growing_file_is_known_by_its_inode_and_may_grow_but_not_shrink_under_a_read(tmp_path: Path) -> None:
    path = tmp_path / "live.mp4"
    path.write_bytes(b"a" * 1000)
    with LocalSource(str(path), (tmp_path,), growing=True) as source:
        first = source.info()
        with open(path, "ab") as out:
            out.write(b"b" * 1000)
        assert source.info().same_source(first.identity) and source.info().size == 2000
        assert b"".join(source.blocks(0, 1500)) == b"a" * 1000 + b"b" * 500  # grew meanwhile: fine
        os.truncate(path, 100)
        with pytest.raises(LiveSizeError, match="shrank") as shrank:
            b"".join(source.blocks(0, 1000))
        assert shrank.value.resumable
