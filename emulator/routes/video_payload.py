"""Validation of ``POST /videos`` and ``PATCH /videos/{id}`` bodies into record changes."""

from __future__ import annotations

from typing import Any

from emulator import errors
from emulator.errors import ApiError

LANGUAGES = frozenset((
    "ar", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr", "hu",
    "it", "ja", "ko", "ml", "nl", "nn", "no", "pl", "pt", "ru", "sk", "sl", "te", "tr", "uk",
    "ur", "vi", "zh",
))
STRING_FIELDS = {"title": "title", "description": "description"}
BOOL_FIELDS = {"public": "public", "panoramic": "panoramic", "mp4Support": "mp4_support"}


def _invalid(name: str, detail: str) -> ApiError:
    return ApiError(errors.INVALID_ATTRIBUTE, 400, name=name, detail=detail, with_problems=True)


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise _invalid("tags", "This attribute must be an array of strings.")
    return list(value)


def _metadata(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise _invalid("metadata", "This attribute must be an array.")
    out = []
    for item in value:
        ok = isinstance(item, dict) and isinstance(item.get("key"), str)
        if not ok or not isinstance(item.get("value"), str):
            raise _invalid("metadata", 'Each item must be an object with string "key" and "value".')
        out.append({"key": item["key"], "value": item["value"]})
    return out


def _language(value: Any) -> str | None:
    if value is None:
        return None
    if value not in LANGUAGES:
        raise _invalid("language", f"Allowed values: {', '.join(sorted(LANGUAGES))}.")
    return str(value)


def video_changes(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    """Record attribute changes from a creation or update payload (merge semantics)."""
    if creating and "title" not in body:
        raise ApiError(errors.ATTRIBUTE_REQUIRED, 400, name="title", with_problems=True)
    if creating and body.get("source") is not None:
        raise _invalid("source", "Creating a video from a URL or another video is not "
                       "reproduced by the emulator.")
    changes: dict[str, Any] = {}
    for name, attr in STRING_FIELDS.items():
        if name in body:
            if not isinstance(body[name], str):
                raise _invalid(name, "This attribute must be a string.")
            changes[attr] = body[name]
    for name, attr in BOOL_FIELDS.items():
        if name in body:
            if not isinstance(body[name], bool):
                raise _invalid(name, "This attribute must be a boolean.")
            changes[attr] = body[name]
    if "playerId" in body:
        player = body["playerId"]
        if player is not None and not isinstance(player, str):
            raise _invalid("playerId", "This attribute must be a string or null.")
        changes["player_id"] = player or None
    if "tags" in body:
        changes["tags"] = _tags(body["tags"])
    if "metadata" in body:
        changes["metadata"] = _metadata(body["metadata"])
    if "language" in body:
        changes["language"] = _language(body["language"])
    return changes
