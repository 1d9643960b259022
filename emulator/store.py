"""On-disk state under ``--data-dir``: videos (record, source bytes, parts) and upload tokens.

Layout::

    DIR/upload_tokens.json          every upload token
    DIR/videos/<videoId>/video.json the record, including the chunk records
    DIR/videos/<videoId>/source     the source bytes (byte ranges are written in place)
    DIR/videos/<videoId>/parts/<n>  parts of a ``part n/N`` upload until assembled

Records are rewritten atomically (temp file + rename) after every change, so a
restart with the same directory finds every video, its bytes and its chunks.
Every video and token record names its account (:mod:`emulator.accounts`);
records written by a single-account emulator have none and are given to the
default account when loaded (and rewritten so, at once).
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
    account: str = ""

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
    """Videos and upload tokens of every account, kept in memory and mirrored to the data directory.

    ``default_account`` owns the records of an older data directory that name no account.
    """

    def __init__(self, data_dir: Path, default_account: str) -> None:
        self.data_dir = data_dir
        self.default_account = default_account
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
            if not video.account:
                video.account = self.default_account
                self.save_video(video)
        if self.tokens_path.exists():
            tokens = [UploadToken(**item) for item in json.loads(self.tokens_path.read_text())]
            self.tokens = {t.token: t for t in tokens}
            if any(not t.account for t in tokens):
                for token in tokens:
                    token.account = token.account or self.default_account
                self.save_tokens()

    # ---- per account --------------------------------------------------------
    def videos_of(self, account: str | None) -> list[Video]:
        """The videos of ``account`` (None: of every account), oldest record first."""
        return [v for v in self.videos.values() if account is None or v.account == account]

    def video_of(self, video_id: str, account: str) -> Video | None:
        """A video of ``account``; None when unknown or another account's."""
        video = self.videos.get(video_id)
        return video if video is not None and video.account == account else None

    def tokens_of(self, account: str | None) -> list[UploadToken]:
        """The upload tokens of ``account`` (None: of every account), expired ones included."""
        return [t for t in self.tokens.values() if account is None or t.account == account]

    def token_of(self, token: str, account: str) -> UploadToken | None:
        """An upload token of ``account``; None when unknown or another account's."""
        found = self.tokens.get(token)
        return found if found is not None and found.account == account else None

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

    def new_video(self, title: str, account: str) -> Video:
        """A new, empty video container of ``account``, not yet registered (see :meth:`add_video`)."""
        now = now_epoch_s()
        return Video(video_id=new_id(VIDEO_ID_PREFIX), title=title, created_s=now, updated_s=now,
                     account=account)

    def add_video(self, video: Video) -> None:
        """Register and persist a video made by :meth:`new_video`."""
        (self.video_dir(video.video_id) / "parts").mkdir(parents=True, exist_ok=True)
        self.source_path(video.video_id).touch()
        self.videos[video.video_id] = video
        self.save_video(video)

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
    def create_token(self, ttl_s: int, account: str) -> UploadToken:
        """A new upload token of ``account`` (persisted)."""
        token = UploadToken(new_id(UPLOAD_TOKEN_PREFIX), ttl_s, now_epoch_s(), account)
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

    def wipe(self, account: str | None = None) -> None:
        """Forget the videos and tokens of ``account``, or of every account (the reset hook)."""
        for video in self.videos_of(account):
            self.delete_video(video.video_id)
        self.tokens = {t.token: t for t in self.tokens.values()
                       if account is not None and t.account != account}
        self.save_tokens()
