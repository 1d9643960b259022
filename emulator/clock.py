"""Time helpers: ATOM timestamps for API bodies and ids in api.video's shapes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from emulator.constants import ID_ALPHABET, ID_RANDOM_CHARS


def now_epoch_s() -> float:
    """Wall-clock seconds since the epoch (persisted timestamps)."""
    return datetime.now(UTC).timestamp()


def atom(epoch_s: float) -> str:
    """ATOM/RFC 3339 text, e.g. ``2019-12-16T08:25:51+00:00``."""
    return datetime.fromtimestamp(int(epoch_s), UTC).isoformat()


def new_id(prefix: str) -> str:
    """A random id such as ``vi4k0jvEUuaTdRAEjQ4Jfrgz`` (prefix + 22 characters)."""
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_RANDOM_CHARS))
