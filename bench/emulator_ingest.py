"""Emulator ingest benchmark: stream a large file through ``POST /upload`` in byte ranges.

Run ``python -m bench.emulator_ingest [--size-mib N] [--chunk-mib M]``. It starts the
emulator on loopback (data dir on /dev/shm when it has room, else the temp dir),
generates the source file, uploads it with a bare httpx loop that streams each
chunk (multipart preamble, file blocks read into one reused buffer, epilogue;
Content-Length set), verifies the sha256 through the ``/_emulator`` hook and
prints a table. :func:`run` returns the numbers for the main benchmark.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from workers.lab.services import running_emulator

MIB = 1024 * 1024
DEFAULT_SIZE_BYTES = 1024 * MIB
DEFAULT_CHUNK_BYTES = 50 * MIB
READ_BLOCK_BYTES = 4 * MIB
SHM_DIR = Path("/dev/shm")
HTTP_TIMEOUT_S = 120.0
BOUNDARY = "vuqbenchboundary7d9a"


def pick_tmp_root(needed_bytes: int) -> Path:
    """/dev/shm when it exists and has room for twice the file, else the temp dir."""
    if SHM_DIR.is_dir() and shutil.disk_usage(SHM_DIR).free > 2 * needed_bytes + 256 * MIB:
        return SHM_DIR
    return Path(tempfile.gettempdir())


def make_source(path: Path, size_bytes: int) -> str:
    """Write ``size_bytes`` of a fast non-repeating pattern; returns its sha256."""
    digest = hashlib.sha256()
    block = bytearray(os.urandom(READ_BLOCK_BYTES))
    with open(path, "wb") as out:
        written = 0
        while written < size_bytes:
            block[:8] = written.to_bytes(8, "little")
            piece = memoryview(block)[: min(READ_BLOCK_BYTES, size_bytes - written)]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def chunk_body(path: Path, first: int, length: int, head: bytes, tail: bytes) -> Iterator[bytes]:
    """Multipart preamble, the file range in blocks read into one reused buffer, epilogue."""
    yield head
    buffer = bytearray(READ_BLOCK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as src:
        src.seek(first)
        left = length
        while left:
            n = src.readinto(view[: min(READ_BLOCK_BYTES, left)])
            if not n:
                raise OSError("source file shrank")
            yield view[:n]  # type: ignore[misc]  # consumed before the buffer is reused
            left -= n
    yield tail


def upload(url: str, token: str, path: Path, size: int, chunk: int) -> tuple[str, int]:
    """Upload ``path`` in byte ranges; returns (videoId, chunk count)."""
    video_id = ""
    count = 0
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as client:
        for first in range(0, size, chunk):
            length = min(chunk, size - first)
            field = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="videoId"\r\n\r\n'
                     f"{video_id}\r\n") if video_id else ""
            head = (f'{field}--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="bench.mp4"\r\nContent-Type: video/mp4\r\n\r\n').encode()
            tail = f"\r\n--{BOUNDARY}--\r\n".encode()
            headers = {
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Content-Range": f"bytes {first}-{first + length - 1}/{size}",
                "Content-Length": str(len(head) + length + len(tail)),
            }
            response = client.post(f"/upload?token={token}", headers=headers,
                                   content=chunk_body(path, first, length, head, tail))
            response.raise_for_status()
            video_id = response.json()["videoId"]
            count += 1
    return video_id, count


def run(size_bytes: int = DEFAULT_SIZE_BYTES, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> dict[str, Any]:
    """Generate, upload and verify; returns bytes, chunks, seconds, MB/s and where data lived."""
    root = pick_tmp_root(size_bytes)
    with tempfile.TemporaryDirectory(dir=root, prefix="vuq-bench-") as tmp:
        source = Path(tmp) / "source.bin"
        expected = make_source(source, size_bytes)
        with running_emulator(Path(tmp) / "emulator-data") as emu:
            token = emu.create_upload_token()
            started = time.perf_counter()
            video_id, chunks = upload(emu.url, token, source, size_bytes, chunk_bytes)
            seconds = time.perf_counter() - started
            stored = emu.video(video_id)
    return {
        "bytes": size_bytes,
        "chunks": chunks,
        "seconds": seconds,
        "mb_per_s": size_bytes / seconds / 1e6,
        "sha256_ok": stored["sha256"] == expected and stored["complete"],
        "data_dir": str(root),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_BYTES // MIB)
    parser.add_argument("--chunk-mib", type=int, default=DEFAULT_CHUNK_BYTES // MIB)
    args = parser.parse_args(argv)
    result = run(args.size_mib * MIB, args.chunk_mib * MIB)
    print(f"data dir on {result['data_dir']}")
    print(f"{'bytes':>14} {'chunks':>7} {'seconds':>8} {'MB/s':>8} {'sha256':>7}")
    print(f"{result['bytes']:>14} {result['chunks']:>7} {result['seconds']:>8.2f} "
          f"{result['mb_per_s']:>8.0f} {'ok' if result['sha256_ok'] else 'BAD':>7}")
    return 0 if result["sha256_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
