"""tasks.outbound.sources: local files confined to the allowed roots, read by byte range."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tasks.errors import SourceError
from tasks.outbound.sources import LocalSource, open_source


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
