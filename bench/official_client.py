"""The official ``api-video`` client (1.4.7) uploading one file through a progressive session.

Run as its own process so its peak RSS is its own::

    python -m bench.official_client URL TOKEN PATH CHUNK_BYTES
    python -m bench.official_client --growing URL TOKEN PATH CHUNK_BYTES

``--growing`` (``bench.live``) reads a file that is still being written: it prints ``ready``, then
sends part n as soon as the file holds more than n chunks (one byte held back, as vuq's live jobs
do), looking at the file's size every ``GROWING_POLL_S``; a line on stdin giving the final size
ends it: the rest goes as whole parts and the last part.

It points a plain ``ApiClient`` at the emulator (``Configuration(host=…)``: its
``AuthenticatedApiClient`` ignores the host, and a delegated token needs no auth
anyway), hands ``uploadPart`` one ``chunk_bytes`` slice of the file at a time (the
session reads each slice into memory, as it does with any file object) and prints one
JSON line: seconds, videoId, parts and VmHWM in KiB.
"""

from __future__ import annotations

import io
import json
import select
import sys
import time
from pathlib import Path
from typing import BinaryIO

from apivideo.api.videos_api import VideosApi
from apivideo.api_client import ApiClient
from apivideo.configuration import Configuration

GROWING_POLL_S = 0.05


class Slice(io.RawIOBase):
    """A seekable read-only view of ``length`` bytes of a file from ``offset`` (one part)."""

    def __init__(self, handle: BinaryIO, offset: int, length: int, name: str) -> None:
        super().__init__()
        self.handle, self.offset, self.length, self.name = handle, offset, length, name
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.length}[whence]
        self.pos = max(0, min(self.length, base + pos))
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        size = self.length - self.pos if size is None or size < 0 else min(size, self.length - self.pos)
        self.handle.seek(self.offset + self.pos)
        data = self.handle.read(size)
        self.pos += len(data)
        return data


def upload(url: str, token: str, path: Path, chunk_bytes: int) -> tuple[str, int]:
    """Upload ``path`` part by part; returns (videoId, parts)."""
    size = path.stat().st_size
    client = ApiClient(Configuration(host=url, chunk_size=chunk_bytes))
    session = VideosApi(client).create_upload_with_upload_token_progressive_session(token)
    parts = -(-size // chunk_bytes)
    with open(path, "rb") as handle:
        for index in range(parts):
            first = index * chunk_bytes
            piece = Slice(handle, first, min(chunk_bytes, size - first), path.name)
            if index + 1 < parts:
                session.uploadPart(piece)
            else:
                video = session.uploadLastPart(piece)
    return str(video.video_id), parts


def final_size(timeout_s: float) -> int | None:
    """The final size once the line giving it is on stdin (waits up to ``timeout_s``), else None."""
    if not select.select([sys.stdin], [], [], timeout_s)[0]:
        return None
    return int(sys.stdin.readline())


def upload_growing(url: str, token: str, path: Path, chunk_bytes: int) -> dict[str, object]:
    """Upload ``path`` while it grows, until stdin gives its final size; when each part went
    (``time.time()``) and when the last one was answered."""
    client = ApiClient(Configuration(host=url, chunk_size=chunk_bytes))
    session = VideosApi(client).create_upload_with_upload_token_progressive_session(token)
    sent, final, parts = 0, None, []
    print("ready", flush=True)
    with open(path, "rb") as handle:
        while True:
            if final is None:
                final = final_size(GROWING_POLL_S)
            size = path.stat().st_size
            limit = final if final is not None else size
            while limit - sent > chunk_bytes:  # a whole part, and at least one byte left for the last
                began = time.time()
                session.uploadPart(Slice(handle, sent, chunk_bytes, path.name))
                parts.append([began, time.time()])
                sent += chunk_bytes
            if final is not None:
                break
        began = time.time()
        video = session.uploadLastPart(Slice(handle, sent, final - sent, path.name))
        parts.append([began, time.time()])
    return {"video_id": str(video.video_id), "parts": parts, "answered_at": parts[-1][1]}


def peak_rss_kib() -> int:
    """This process's VmHWM (imports nothing of vuq, so the peak is the client's own)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise KeyError("VmHWM")


def main(argv: list[str]) -> int:
    if argv[0] == "--growing":
        url, token, path, chunk = argv[1], argv[2], Path(argv[3]), int(argv[4])
        print(json.dumps({**upload_growing(url, token, path, chunk), "vmhwm_kib": peak_rss_kib()}))
        return 0
    url, token, path, chunk = argv[0], argv[1], Path(argv[2]), int(argv[3])
    started = time.perf_counter()
    video_id, parts = upload(url, token, path, chunk)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "video_id": video_id, "parts": parts,
                      "vmhwm_kib": peak_rss_kib()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
