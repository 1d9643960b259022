"""On-disk state under ``--data-dir``: videos (record, source bytes, parts) and upload tokens.

Layout::

    DIR/upload_tokens.json          every upload token
    DIR/videos/<videoId>/video.json the record, including the chunk records
    DIR/videos/<videoId>/source     the source bytes (byte ranges are written in place)
    DIR/videos/<videoId>/parts/<n>  parts of a ``part n/N`` upload until assembled

Records are rewritten atomically (temp file + rename) after every change, so a
restart with the same directory finds every video, its bytes and its chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emulator.clock import new_id, now_epoch_s
from emulator.constants import READ_BLOCK_BYTES
from emulator.videos import Video

VIDEO_ID_PREFIX = "vi"
UPLOAD_TOKEN_PREFIX = "to"


@dataclass
class UploadToken:
    """A delegated upload token; ``ttl_s`` 0 means it never expires."""

    token: str
    ttl_s: int
    created_s: float

    @property
    def expires_s(self) -> float | None:
        """Expiry time (epoch seconds), or None for a token without expiry."""
        return self.created_s + self.ttl_s if self.ttl_s else None

    def active(self, at_s: float) -> bool:
        """True while the token may be used."""
        expires = self.expires_s
        return expires is None or at_s < expires


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class Store:
    """Videos and upload tokens, kept in memory and mirrored to the data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.videos_dir = data_dir / "videos"
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        self.tokens_path = data_dir / "upload_tokens.json"
        self.videos: dict[str, Video] = {}
        self.tokens: dict[str, UploadToken] = {}
        self._load()

    def _load(self) -> None:
        for record in sorted(self.videos_dir.glob("*/video.json")):
            video = Video.from_dict(json.loads(record.read_text()))
            self.videos[video.video_id] = video
        if self.tokens_path.exists():
            for item in json.loads(self.tokens_path.read_text()):
                self.tokens[item["token"]] = UploadToken(**item)

    # ---- videos -------------------------------------------------------------
    def video_dir(self, video_id: str) -> Path:
        """Directory of one video."""
        return self.videos_dir / video_id

    def source_path(self, video_id: str) -> Path:
        """The assembled (or in-place written) source file."""
        return self.video_dir(video_id) / "source"

    def part_path(self, video_id: str, number: int) -> Path:
        """Where part ``number`` of a part upload is stored."""
        return self.video_dir(video_id) / "parts" / str(number)

    def new_video(self, title: str) -> Video:
        """A new, empty video container, not yet registered (see :meth:`add_video`)."""
        now = now_epoch_s()
        return Video(video_id=new_id(VIDEO_ID_PREFIX), title=title, created_s=now, updated_s=now)

    def add_video(self, video: Video) -> None:
        """Register and persist a video made by :meth:`new_video`."""
        (self.video_dir(video.video_id) / "parts").mkdir(parents=True, exist_ok=True)
        self.source_path(video.video_id).touch()
        self.videos[video.video_id] = video
        self.save_video(video)

    def create_video(self, title: str) -> Video:
        """A new, empty, registered video container."""
        video = self.new_video(title)
        self.add_video(video)
        return video

    def save_video(self, video: Video) -> None:
        """Persist one video record."""
        _write_json(self.video_dir(video.video_id) / "video.json", video.to_dict())

    def delete_video(self, video_id: str) -> None:
        """Forget a video and remove its bytes."""
        self.videos.pop(video_id, None)
        shutil.rmtree(self.video_dir(video_id), ignore_errors=True)

    def assemble_parts(self, video: Video) -> None:
        """Concatenate a completed part upload into the source file (blocking; run in a thread)."""
        numbers = sorted(c.part or 0 for c in video.upload.chunks)
        with open(self.source_path(video.video_id), "wb") as out:
            for number in numbers:
                part = self.part_path(video.video_id, number)
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, READ_BLOCK_BYTES)
                part.unlink()

    def sha256(self, video: Video) -> str:
        """Digest of the source bytes (blocking; run in a thread); cached by the caller."""
        digest = hashlib.sha256()
        buffer = bytearray(READ_BLOCK_BYTES)
        view = memoryview(buffer)
        with open(self.source_path(video.video_id), "rb", buffering=0) as src:
            while n := src.readinto(buffer):
                digest.update(view[:n])
        return digest.hexdigest()

    # ---- upload tokens ------------------------------------------------------
    def create_token(self, ttl_s: int) -> UploadToken:
        """A new upload token (persisted)."""
        token = UploadToken(new_id(UPLOAD_TOKEN_PREFIX), ttl_s, now_epoch_s())
        self.tokens[token.token] = token
        self.save_tokens()
        return token

    def delete_token(self, token: str) -> None:
        """Delete an upload token (persisted)."""
        self.tokens.pop(token, None)
        self.save_tokens()

    def save_tokens(self) -> None:
        """Persist every upload token."""
        _write_json(self.tokens_path, [asdict(t) for t in self.tokens.values()])

    def wipe(self) -> None:
        """Forget every video and token (the reset hook)."""
        for video_id in list(self.videos):
            self.delete_video(video_id)
        self.tokens.clear()
        self.save_tokens()
