"""Request bodies are streamed to disk: the emulator's peak RSS does not grow with chunk size."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from bench.emulator_ingest import make_source, upload
from tests.support.emulator import running_emulator

MIB = 1024 * 1024
SOURCE_BYTES = 200 * MIB
CHUNK_BYTES = 128 * MIB
MAX_GROWTH_BYTES = 40 * MIB


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_large_chunks_do_not_grow_memory(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    expected = make_source(source, SOURCE_BYTES)
    with running_emulator(tmp_path / "data") as emu:
        token = emu.create_upload_token()
        with httpx.Client(base_url=emu.url) as http:  # warm up the upload path
            http.post("/upload", params={"token": token}, files={"f": ("w.mp4", b"warm")})
        before = peak_rss_bytes(emu.proc.pid)
        video_id, chunks = upload(emu.url, token, source, SOURCE_BYTES, CHUNK_BYTES)
        after = peak_rss_bytes(emu.proc.pid)
        assert chunks == 2
        assert emu.video(video_id)["sha256"] == expected
    assert after - before < MAX_GROWTH_BYTES, f"peak RSS grew by {(after - before) / MIB:.1f} MiB"
