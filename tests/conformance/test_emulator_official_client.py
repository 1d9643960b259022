"""The official Python client (api.video 1.4.7) against the emulator (how it uploads: docs/protocol.md)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import apivideo
import pytest
from apivideo.api.upload_tokens_api import UploadTokensApi
from apivideo.api.videos_api import VideosApi
from apivideo.exceptions import NotFoundException
from apivideo.model.metadata import Metadata
from apivideo.model.token_creation_payload import TokenCreationPayload
from apivideo.model.video_creation_payload import VideoCreationPayload
from apivideo.model.video_update_payload import VideoUpdatePayload

from tests.support.emulator import Emulator, running_emulator

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


def authenticated(url: str, api_key: str) -> apivideo.AuthenticatedApiClient:
    client = apivideo.AuthenticatedApiClient(api_key)
    client.configuration.host = url
    return client


def test_progressive_sessions_of_a_second_account_are_byte_exact(tmp_path: Path) -> None:
    """Both progressive sessions (token and two-step) of the official client, as a second account:
    parts `part n/*` then `part N/N`, the status between parts, and the bytes in the right account."""
    source = tmp_path / "progressive.mp4"
    digest = write_random(source, 3 * PART_BYTES + 123_456)
    parts = split_parts(source, PART_BYTES)
    with running_emulator(tmp_path / "emu", api_key="first-key", api_keys=["second-key"]) as emu, \
            authenticated(emu.url, "second-key") as client:
        second = emu.for_key("second-key").account
        videos = VideosApi(client)
        token = UploadTokensApi(client).create_token(TokenCreationPayload(ttl=0)).token
        by_token = videos.create_upload_with_upload_token_progressive_session(token)
        container = videos.create(VideoCreationPayload(title="two-step")).video_id
        two_step = videos.create_upload_progressive_session(container)
        for session in (by_token, two_step):
            for part in parts[:-1]:
                with part.open("rb") as handle:
                    answer = session.uploadPart(handle)
            video_id = answer.video_id
            received = videos.get_status(video_id).ingest.received_parts
            assert (received.parts, received.total) == (list(range(1, len(parts))), None)
            with parts[-1].open("rb") as handle:
                video = session.uploadLastPart(handle)
            assert video.video_id == video_id
            status = videos.get_status(video_id).ingest
            assert status.status == "uploaded" and status.filesize == source.stat().st_size
            assert (status.received_parts.parts, status.received_parts.total) == (
                list(range(1, len(parts) + 1)), len(parts))
            stored = emu.video(video_id)
            assert stored["sha256"] == digest and stored["account"] == second
        assert container == video_id
        assert emu.videos(account=emu.account) == []
        sent = [e["content_range"] for e in emu.requests_log(account=second) if e["class"] == "upload"]
        expected = [f"part {n}/*" for n in range(1, len(parts))] + [f"part {len(parts)}/{len(parts)}"]
        assert sent == expected * 2


def test_a_token_session_into_another_accounts_video_is_not_found(tmp_path: Path) -> None:
    part = tmp_path / "part.mp4"
    write_random(part, PART_BYTES)
    with running_emulator(tmp_path / "emu", api_key="first-key", api_keys=["second-key"]) as emu:
        with authenticated(emu.url, "first-key") as first:
            theirs = VideosApi(first).create(VideoCreationPayload(title="first's")).video_id
        with authenticated(emu.url, "second-key") as second:
            token = UploadTokensApi(second).create_token(TokenCreationPayload(ttl=0)).token
            session = VideosApi(second).create_upload_with_upload_token_progressive_session(token, theirs)
            with part.open("rb") as handle, pytest.raises(NotFoundException) as caught:
                session.uploadPart(handle)
            assert json.loads(caught.value.body)["name"] == "videoId"
            with pytest.raises(NotFoundException):
                VideosApi(second).get_status(theirs)
        assert emu.video(theirs)["size"] == 0
