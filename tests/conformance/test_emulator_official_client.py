"""The official Python client (api.video 1.4.7) against the emulator (how it uploads: docs/protocol.md)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import apivideo
from apivideo.api.upload_tokens_api import UploadTokensApi
from apivideo.api.videos_api import VideosApi
from apivideo.model.metadata import Metadata
from apivideo.model.token_creation_payload import TokenCreationPayload
from apivideo.model.video_update_payload import VideoUpdatePayload

from tests.support.emulator import Emulator

MIB = 1024 * 1024
PART_BYTES = 5 * MIB
BIG_BYTES = 23 * MIB
SMALL_BYTES = 3 * MIB


def write_random(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def split_parts(source: Path, part_bytes: int) -> list[Path]:
    data = source.read_bytes()
    parts = []
    for index, first in enumerate(range(0, len(data), part_bytes), start=1):
        part = source.with_name(f"{source.stem}.part{index}.mp4")
        part.write_bytes(data[first : first + part_bytes])
        parts.append(part)
    return parts


def test_official_client_uploads_and_patches(emulator: Emulator, tmp_path: Path) -> None:
    big, small = tmp_path / "big.mp4", tmp_path / "small.mp4"
    big_sha, small_sha = write_random(big, BIG_BYTES), write_random(small, SMALL_BYTES)
    client = apivideo.AuthenticatedApiClient(emulator.api_key)
    client.configuration.host = emulator.url  # AuthenticatedApiClient overwrites Configuration(host=…); set it after
    with client:
        token = UploadTokensApi(client).create_token(TokenCreationPayload(ttl=0)).token
        videos = VideosApi(client)
        session = videos.create_upload_with_upload_token_progressive_session(token)
        parts = split_parts(big, PART_BYTES)
        for part in parts[:-1]:
            with part.open("rb") as handle:
                session.uploadPart(handle)
        with parts[-1].open("rb") as handle:
            video = session.uploadLastPart(handle)
        with small.open("rb") as handle:
            single = videos.upload_with_upload_token(token, handle)
        update = VideoUpdatePayload(title="Conformance", tags=["a", "b"],
                                    metadata=[Metadata(key="k", value="v")])
        videos.update(video.video_id, update)
        fetched = videos.get(video.video_id)
    assert fetched.title == "Conformance" and fetched.tags == ["a", "b"]
    assert [(m.key, m.value) for m in fetched.metadata] == [("k", "v")]
    stored = emulator.video(video.video_id)
    assert stored["complete"] and stored["sha256"] == big_sha and stored["size"] == BIG_BYTES
    assert [c["arrived"] for c in stored["chunks"]] == list(range(1, len(parts) + 1))
    assert [c["from"] for c in stored["chunks"]] == list(range(0, BIG_BYTES, PART_BYTES))
    assert emulator.video(single.video_id)["sha256"] == small_sha
    assert single.title == "small.mp4"
