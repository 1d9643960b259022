"""The video record and its api.video JSON shapes (Video, VideoStatus; docs/protocol.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.chunks import MODE_PART, UploadState
from emulator.clock import atom

EMBED_URL = "https://embed.api.video/vod/"
CDN_URL = "https://cdn.api.video/vod/"


@dataclass
class Video:
    """One video container: its attributes, its upload state and cached digest."""

    video_id: str
    title: str
    created_s: float
    updated_s: float
    description: str = ""
    tags: list[str] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    public: bool = True
    panoramic: bool = False
    mp4_support: bool = True
    player_id: str | None = None
    language: str | None = None
    upload: UploadState = field(default_factory=UploadState)
    sha256: str | None = None
    assembled: bool = False
    account: str = ""  # the owning account's id; "" only in records of a single-account emulator

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for persistence."""
        data = asdict(self)
        data["upload"] = self.upload.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Video:
        """Inverse of :meth:`to_dict`."""
        fields = dict(data)
        fields["upload"] = UploadState.from_dict(fields.get("upload", {}))
        return cls(**fields)

    @property
    def complete(self) -> bool:
        """True once the whole source was received."""
        return self.upload.complete


def video_json(video: Video) -> dict[str, Any]:
    """The api.video ``Video`` object."""
    vid = video.video_id
    assets: dict[str, str] = {
        "iframe": f'<iframe src="{EMBED_URL}{vid}" width="100%" height="100%" frameborder="0" '
        'scrolling="no" allowfullscreen=""></iframe>',
        "player": EMBED_URL + vid,
        "hls": f"{CDN_URL}{vid}/hls/manifest.m3u8",
        "thumbnail": f"{CDN_URL}{vid}/thumbnail.jpg",
    }
    if video.mp4_support:
        assets["mp4"] = f"{CDN_URL}{vid}/mp4/source.mp4"
    body: dict[str, Any] = {
        "videoId": vid,
        "createdAt": atom(video.created_s),
        "title": video.title,
        "description": video.description,
        "publishedAt": atom(video.created_s),
        "updatedAt": atom(video.updated_s),
        "discardedAt": None,
        "deletesAt": None,
        "discarded": False,
        "tags": list(video.tags),
        "metadata": [dict(m) for m in video.metadata],
        "source": {"uri": f"/videos/{vid}/source"},
        "assets": assets,
        "public": video.public,
        "panoramic": video.panoramic,
        "mp4Support": video.mp4_support,
    }
    if video.language:  # languageOrigin is a nullable enum without null: omit it instead
        body["language"] = video.language
        body["languageOrigin"] = "api"
    if video.player_id:
        body["playerId"] = video.player_id
    return body


def status_json(video: Video) -> dict[str, Any]:
    """The api.video ``VideoStatus`` object (ingest only ever ``uploading|uploaded``)."""
    state = video.upload
    ingest: dict[str, Any] = {
        "status": "uploaded" if state.complete else "uploading",
        "filesize": state.filesize(),
    }
    if state.mode == MODE_PART:
        parts = sorted(c.part or 0 for c in state.chunks)
        ingest["receivedParts"] = {"parts": parts, "total": state.total}
    else:
        total = state.total if state.total is not None else state.filesize()
        ingest["receivedBytes"] = [
            {"from": first, "to": last, **({"total": total} if total is not None else {})}
            for first, last, _ in state.spans()
        ]
    metadata_keys = ("width", "height", "bitrate", "duration", "framerate", "samplerate",
                     "videoCodec", "audioCodec", "aspectRatio")
    encoding = {
        "playable": state.complete,
        "qualities": [],
        "metadata": dict.fromkeys(metadata_keys),
    }
    return {"ingest": ingest, "encoding": encoding}


def hook_json(video: Video) -> dict[str, Any]:
    """The ``/_emulator/videos/{id}`` object (not api.video)."""
    chunks = [{"from": first, "to": last, "arrived": c.arrived, **({"part": c.part} if c.part else {})}
              for first, last, c in video.upload.spans()]
    return {
        "videoId": video.video_id,
        "account": video.account,
        "size": video.upload.received_bytes(),
        "sha256": video.sha256 if video.complete else None,
        "complete": video.complete,
        "chunks": chunks,
        "title": video.title,
        "tags": list(video.tags),
        "metadata": {m["key"]: m["value"] for m in video.metadata},
    }
