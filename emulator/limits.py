"""Per-class request limits: the ``--limits`` profiles and the ``limits`` fault setting.

api.video limits each account per minute and per request class: uploads
(``POST /upload``, ``POST /videos/{id}/source``), reads (GET/HEAD) and writes
(everything else). :class:`ClassLimits` holds one positive limit per class;
:data:`PROFILES` are the ``generous`` default (effectively unlimited) and the
limits of api.video's ``production`` and ``sandbox`` environments.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from emulator.constants import (
    GENEROUS_READ_LIMIT_PER_MINUTE,
    GENEROUS_UPLOAD_LIMIT_PER_MINUTE,
    GENEROUS_WRITE_LIMIT_PER_MINUTE,
    PRODUCTION_READ_LIMIT_PER_MINUTE,
    PRODUCTION_UPLOAD_LIMIT_PER_MINUTE,
    PRODUCTION_WRITE_LIMIT_PER_MINUTE,
    SANDBOX_READ_LIMIT_PER_MINUTE,
    SANDBOX_UPLOAD_LIMIT_PER_MINUTE,
    SANDBOX_WRITE_LIMIT_PER_MINUTE,
)

CLASS_UPLOAD = "upload"
CLASS_WRITE = "write"
CLASS_READ = "read"
CLASSES = (CLASS_UPLOAD, CLASS_WRITE, CLASS_READ)


@dataclass(frozen=True)
class ClassLimits:
    """Requests allowed per one-minute window, by class; every limit is a positive integer."""

    upload: int
    write: int
    read: int

    def __post_init__(self) -> None:
        for request_class in CLASSES:
            value = getattr(self, request_class)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limits.{request_class} must be a positive integer, got {value!r}")

    def of(self, request_class: str) -> int:
        """The limit of request class ``request_class``."""
        return int(getattr(self, request_class))

    def to_json(self) -> dict[str, int]:
        """``{"upload": n, "write": n, "read": n}``."""
        return asdict(self)

    def updated(self, changes: Any) -> ClassLimits:
        """A copy with the classes named in the JSON object ``changes`` changed; raises ValueError."""
        if not isinstance(changes, dict):
            raise ValueError("limits must be an object with any of " + ", ".join(CLASSES))
        unknown = set(changes) - set(CLASSES)
        if unknown:
            raise ValueError(f"unknown limit classes: {sorted(unknown)} (known: {', '.join(CLASSES)})")
        return replace(self, **changes)


GENEROUS = ClassLimits(GENEROUS_UPLOAD_LIMIT_PER_MINUTE, GENEROUS_WRITE_LIMIT_PER_MINUTE,
                       GENEROUS_READ_LIMIT_PER_MINUTE)
PRODUCTION = ClassLimits(PRODUCTION_UPLOAD_LIMIT_PER_MINUTE, PRODUCTION_WRITE_LIMIT_PER_MINUTE,
                         PRODUCTION_READ_LIMIT_PER_MINUTE)
SANDBOX = ClassLimits(SANDBOX_UPLOAD_LIMIT_PER_MINUTE, SANDBOX_WRITE_LIMIT_PER_MINUTE,
                      SANDBOX_READ_LIMIT_PER_MINUTE)
PROFILES = {"generous": GENEROUS, "production": PRODUCTION, "sandbox": SANDBOX}
DEFAULT_PROFILE = "generous"
