"""The job spec, the public contract a producer sends (README "Job spec, version 1"), typed.

``parse_spec`` turns a JSON-shaped dict into an ``UploadSpec`` or raises a ``SpecError`` that
names the offending field. From then on the spec travels as an ``UploadSpec`` (its metadata as a
``Video``): JSON only at the job store's edge (``to_json``/``from_json``, never the token) and in
messages. ``from_json`` reads back what ``to_json`` wrote, trusting it: it was validated on its
way in.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from tasks.apivideo.accounts import ACCOUNT_NAME, DEFAULT_ACCOUNT
from tasks.constants import (
    MAX_CHUNK_BYTES,
    MAX_DESCRIPTION_CHARS,
    MAX_JOB_ID_CHARS,
    MAX_METADATA_CHARS,
    MAX_METADATA_PAIRS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    MIN_CHUNK_BYTES,
    SPEC_VERSION,
)
from tasks.errors import SpecError
from tasks.job.sizes import parse_size
from tasks.outbound.address_policy import BlockedAddress, NetPolicy, check_url
from tasks.redact import mask_url

SPEC_FIELDS = frozenset({"version", "source", "token", "video", "chunk_size", "job_id", "callback_url", "account",
                         "tenant", "priority", "live", "finish_when_idle_s"})
MAX_FINISH_WHEN_IDLE_S = 7 * 24 * 3600
INTERACTIVE, BULK = "interactive", "bulk"
PRIORITIES = (INTERACTIVE, BULK)
_TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_BOOL_FIELDS = {"public": "public", "panoramic": "panoramic", "mp4Support": "mp4_support"}
VIDEO_FIELDS = frozenset({"title", "description", "tags", "metadata", "playerId", *_BOOL_FIELDS})
_JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


@dataclass(frozen=True)
class Video:
    """The metadata a job patches onto its video at the end (api.video's names in JSON). A field
    left None is not sent; ``clear_player`` sends ``"playerId": null`` (api.video unsets it)."""

    title: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    metadata: tuple[tuple[str, str], ...] | None = None
    public: bool | None = None
    panoramic: bool | None = None
    mp4_support: bool | None = None
    player_id: str | None = None
    clear_player: bool = False

    def to_json(self) -> dict[str, Any]:
        """The fields given, as api.video's ``PATCH /videos/{id}`` takes them."""
        data: dict[str, Any] = {name: getattr(self, name) for name in ("title", "description", "public", "panoramic")
                                if getattr(self, name) is not None}
        if self.mp4_support is not None:
            data["mp4Support"] = self.mp4_support
        if self.tags is not None:
            data["tags"] = list(self.tags)
        if self.metadata is not None:
            data["metadata"] = [{"key": k, "value": v} for k, v in self.metadata]
        if self.player_id is not None or self.clear_player:
            data["playerId"] = self.player_id
        return data

    def key_fields(self) -> list[str]:
        """The fields given that only an API-key request can set (api.video's names): all of them."""
        return list(self.to_json())

    def tagged(self, key: str, value: str) -> Video:
        """This metadata plus one more pair (the tag that finds the job's video again)."""
        return replace(self, metadata=(*(self.metadata or ()), (key, value)))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Video:
        """What ``to_json`` wrote (validated on its way in)."""
        metadata = data.get("metadata")
        return cls(title=data.get("title"), description=data.get("description"),
                   tags=tuple(data["tags"]) if data.get("tags") is not None else None,
                   metadata=tuple((p["key"], p["value"]) for p in metadata) if metadata is not None else None,
                   public=data.get("public"), panoramic=data.get("panoramic"), mp4_support=data.get("mp4Support"),
                   player_id=data.get("playerId"), clear_player="playerId" in data and data["playerId"] is None)


@dataclass(frozen=True)
class UploadSpec:
    """A validated job spec. ``token`` is never part of its JSON (it lives apart in the job record)."""

    source: str
    token: str | None = field(default=None, repr=False)
    video: Video = field(default_factory=Video)
    chunk_size: int | None = None
    job_id: str | None = None
    callback_url: str | None = None
    account: str | None = None  # None: the account that owns the token (else ``default`` mints one)
    tenant: str | None = None  # whose share of the account's budget; None: the account's name
    priority: str = INTERACTIVE  # bulk jobs get only the slots no interactive job waits for
    live: bool = False  # a file still being written: parts go as it grows, until a finish gives its size
    finish_when_idle_s: int | None = None  # a live job finishes by itself once its file stops growing this long

    @property
    def share(self) -> str:
        """The tenant whose turn a request of this job takes."""
        return self.tenant or self.account or DEFAULT_ACCOUNT

    def fingerprint(self) -> str:
        """What makes two enqueues of one ``job_id`` the same request (token included, hashed)."""
        data = {**self.to_json(), "token": self.token}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON, without the token: what the job record keeps and shows."""
        data: dict[str, Any] = {"version": SPEC_VERSION, "source": self.source, "video": self.video.to_json()}
        for name in ("chunk_size", "job_id", "callback_url", "account", "tenant", "finish_when_idle_s"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.priority != INTERACTIVE:
            data["priority"] = self.priority
        if self.live:
            data["live"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadSpec:
        """What ``to_json`` wrote (the job record's ``spec``); the token is not in it."""
        return cls(source=str(data.get("source", "")), video=Video.from_json(data.get("video") or {}),
                   chunk_size=data.get("chunk_size"), job_id=data.get("job_id"),
                   callback_url=data.get("callback_url"), account=data.get("account"), tenant=data.get("tenant"),
                   priority=data.get("priority") or INTERACTIVE, live=bool(data.get("live")),
                   finish_when_idle_s=data.get("finish_when_idle_s"))


def is_job_id(value: object) -> bool:
    """Whether ``value`` is a job id as the contract writes them (the whole of it matches)."""
    return isinstance(value, str) and len(value) <= MAX_JOB_ID_CHARS and bool(_JOB_ID_RE.fullmatch(value))


def new_job_id() -> str:
    return uuid.uuid4().hex


def parse_spec(raw: Mapping[str, Any], policy: NetPolicy | None = None) -> UploadSpec:
    """Validate ``raw``; every problem is a SpecError naming its field. http(s) sources and
    callbacks that name a non-global address are refused unless ``policy`` allows them."""
    policy = policy or NetPolicy()
    if not isinstance(raw, Mapping):
        raise SpecError("spec", f"must be an object, not {type(raw).__name__}")
    unknown = sorted(set(raw) - SPEC_FIELDS)
    if unknown:
        raise SpecError(unknown[0], f"unknown field (allowed: {', '.join(sorted(SPEC_FIELDS))})")
    version = raw.get("version", SPEC_VERSION)
    if version != SPEC_VERSION:
        raise SpecError("version", f"unsupported spec version {version!r} (this worker speaks 1)")
    live, finish_when_idle_s = _live(raw)
    return UploadSpec(
        source=_source(raw.get("source"), policy),
        token=_optional_text(raw, "token", 512),
        video=parse_video(raw.get("video") or {}),
        chunk_size=_chunk_size(raw.get("chunk_size")),
        job_id=_job_id(raw.get("job_id")),
        callback_url=_callback_url(raw.get("callback_url"), policy),
        account=_name("account", raw.get("account"), ACCOUNT_NAME, "64"),
        tenant=_name("tenant", raw.get("tenant"), _TENANT_RE, "64"),
        priority=_priority(raw.get("priority")),
        live=live,
        finish_when_idle_s=finish_when_idle_s,
    )


def parse_video(raw: Any) -> Video:
    """Validate the metadata to patch; metadata pairs may come as {key: value} or [{key, value}]."""
    if not isinstance(raw, Mapping):
        raise SpecError("video", f"must be an object, not {type(raw).__name__}")
    unknown = sorted(set(raw) - VIDEO_FIELDS)
    if unknown:
        raise SpecError(f"video.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(VIDEO_FIELDS))})")
    given: dict[str, Any] = {}
    for name, limit in (("title", MAX_TITLE_CHARS), ("description", MAX_DESCRIPTION_CHARS)):
        if raw.get(name) is not None:
            given[name] = _text(f"video.{name}", raw[name], limit)
    for name, attribute in _BOOL_FIELDS.items():
        if raw.get(name) is not None:
            if not isinstance(raw[name], bool):
                raise SpecError(f"video.{name}", f"must be true or false, not {raw[name]!r}")
            given[attribute] = raw[name]
    if "playerId" in raw:
        if raw["playerId"] is None:
            given["clear_player"] = True
        else:
            given["player_id"] = _text("video.playerId", raw["playerId"], 64)
    if raw.get("tags") is not None:
        given["tags"] = tuple(_tags(raw["tags"]))
    if raw.get("metadata") is not None:
        given["metadata"] = tuple((p["key"], p["value"]) for p in _metadata(raw["metadata"]))
    return Video(**given)


# Text fields are one line of plain text: no C0 or C1 control character (U+0000..U+001F, U+007F..U+009F:
# terminal escapes, carriage returns that overwrite what a listing shows, NUL), and no bidirectional
# override or isolate (U+202A..U+202E, U+2066..U+2069: "Trojan Source" text that displays other than it
# reads). A description may hold several lines: it keeps line feeds and tabs (send LF, not CRLF).
_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_REFUSED_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MULTILINE_FIELDS = frozenset({"video.description"})
_CONTROL_NAMES = {0x00: "null byte", 0x07: "bell", 0x08: "backspace", 0x09: "tab", 0x0A: "line feed",
                  0x0D: "carriage return", 0x1B: "escape", 0x7F: "delete", 0x9B: "control sequence introducer"}


def _text(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise SpecError(name, f"must be a string, not {type(value).__name__}")
    if value.isascii() and value.isprintable() and len(value) <= limit:
        return value  # no control character, nothing that is not UTF-8, no bidi control: the usual case
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError(name, "is not valid UTF-8 text") from None
    if len(value) > limit:
        raise SpecError(name, f"is {len(value)} characters long; at most {limit} are allowed")
    found = (_REFUSED_MULTILINE if name in _MULTILINE_FIELDS else _REFUSED).search(value)
    if found:
        code = ord(found.group())
        if 0x202A <= code <= 0x2069:
            raise SpecError(name, f"holds the bidirectional control U+{code:04X} ({unicodedata.name(found.group())}) "
                                  f"at character {found.start() + 1}; overrides and isolates are not allowed: "
                                  "they make text display other than it reads")
        what = _CONTROL_NAMES.get(code, "a control character")
        lines = " other than line feed and tab" if name in _MULTILINE_FIELDS else ""
        raise SpecError(name, f"holds U+{code:04X} ({what}) at character {found.start() + 1}; "
                              f"control characters{lines} are not allowed")
    return value


def _optional_text(raw: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    text = _text(name, value, limit)
    if not text.strip():
        raise SpecError(name, "must not be empty")
    return text


def _checked_url(name: str, url: str, policy: NetPolicy) -> None:
    try:
        check_url(url, policy)
    except (ValueError, BlockedAddress) as exc:
        raise SpecError(name, str(exc)) from None


def _source(value: Any, policy: NetPolicy) -> str:
    if value is None:
        raise SpecError("source", "is required: a path, a file:// URL or an http(s):// URL")
    source = _text("source", value, 4096)
    if not source.strip():
        raise SpecError("source", "must not be empty")
    scheme = urlsplit(source).scheme.lower()
    if scheme not in ("", "file", "http", "https"):
        raise SpecError("source", f"unsupported scheme {scheme!r} (use a path, file://, http:// or https://)")
    if scheme in ("http", "https"):
        _checked_url("source", source, policy)
    return source


def _chunk_size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError("chunk_size", f"must be a number of bytes or a size like '50MiB', not {value!r}")
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise SpecError("chunk_size", str(exc)) from None
    if not MIN_CHUNK_BYTES <= size <= MAX_CHUNK_BYTES:
        raise SpecError("chunk_size", f"{size} bytes is outside 5 MiB..128 MiB ({MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES})")
    return size


def _job_id(value: Any) -> str | None:
    if value is None:
        return None
    job_id = _text("job_id", value, MAX_JOB_ID_CHARS)
    if not _JOB_ID_RE.fullmatch(job_id):
        raise SpecError("job_id", "may hold only letters, digits and . _ : - (and must start with a letter or digit)")
    return job_id


def _name(field: str, value: Any, pattern: re.Pattern[str], longest: str) -> str | None:
    if value is None:
        return None
    name = _text(field, value, 256)
    if not pattern.fullmatch(name):
        allowed = "letters, digits and . _ -" + (" :" if ":" in pattern.pattern else "")
        raise SpecError(field, f"may hold only {allowed} (at most {longest}, starting with a letter or digit)")
    return name


def _priority(value: Any) -> str:
    if value is None:
        return INTERACTIVE
    if value not in PRIORITIES:
        raise SpecError("priority", f"must be {INTERACTIVE!r} or {BULK!r}, not {value!r}")
    return str(value)


def _live(raw: Mapping[str, Any]) -> tuple[bool, int | None]:
    """``live`` and ``finish_when_idle_s``: a live job's source is a local file (a path or file://)."""
    live, idle = raw.get("live"), raw.get("finish_when_idle_s")
    if live is not None and not isinstance(live, bool):
        raise SpecError("live", f"must be true or false, not {live!r}")
    if live and isinstance(raw.get("source"), str) and urlsplit(raw["source"]).scheme.lower() not in ("", "file"):
        raise SpecError("live", "a live job's source must be a local file (a path or a file:// URL) that grows")
    if idle is None:
        return bool(live), None
    if not live:
        raise SpecError("finish_when_idle_s", "is for live jobs only (add \"live\": true)")
    if isinstance(idle, bool) or not isinstance(idle, int) or not 1 <= idle <= MAX_FINISH_WHEN_IDLE_S:
        raise SpecError("finish_when_idle_s", f"must be a whole number of seconds 1..{MAX_FINISH_WHEN_IDLE_S}, "
                                              f"not {idle!r}")
    return True, idle


def _callback_url(value: Any, policy: NetPolicy) -> str | None:
    if value is None:
        return None
    url = _text("callback_url", value, 2048)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise SpecError("callback_url", f"must be an http:// or https:// URL, not {mask_url(url)!r}")
    _checked_url("callback_url", url, policy)
    return url


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise SpecError("video.tags", f"must be a list of strings, not {type(value).__name__}")
    if len(value) > MAX_TAGS:
        raise SpecError("video.tags", f"has {len(value)} tags; at most {MAX_TAGS} are allowed")
    return [_text(f"video.tags[{i}]", tag, MAX_TAG_CHARS) for i, tag in enumerate(value)]


def _metadata(value: Any) -> list[dict[str, str]]:
    if isinstance(value, Mapping):
        pairs = [{"key": k, "value": v} for k, v in value.items()]
    elif isinstance(value, list | tuple):
        pairs = list(value)
    else:
        raise SpecError("video.metadata", "must be an object of strings or a list of {key, value}")
    if len(pairs) > MAX_METADATA_PAIRS:
        raise SpecError("video.metadata", f"has {len(pairs)} pairs; at most {MAX_METADATA_PAIRS} are allowed")
    result = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, Mapping) or set(pair) != {"key", "value"}:
            raise SpecError(f"video.metadata[{i}]", "must be an object with exactly 'key' and 'value'")
        key = _text(f"video.metadata[{i}].key", pair["key"], MAX_METADATA_CHARS)
        if not key:
            raise SpecError(f"video.metadata[{i}].key", "must not be empty")
        result.append({"key": key, "value": _text(f"video.metadata[{key}]", pair["value"], MAX_METADATA_CHARS)})
    return result
