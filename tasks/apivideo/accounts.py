"""The api.video accounts the workers hold keys for: one ``AccountConfig`` per name.

``VUQ_API_KEY`` (or ``_FILE``) is the account named ``default``; ``VUQ_ACCOUNTS_FILE`` names a TOML
file with more::

    [accounts.acme]
    api_key_file = "/run/secrets/acme-key"        # or api_key = "…"; a relative path is read beside this file
    rate_limits = "upload=100,write=200,read=500"  # optional; learned from X-RateLimit-Limit otherwise

An account's identity is its key (a hash of it, never the key): two names for one key are one
api.video account, with one budget.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.apivideo.limiter import parse_rate_limits

DEFAULT_ACCOUNT = "default"
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ACCOUNT_FIELDS = frozenset({"api_key", "api_key_file", "rate_limits"})


@dataclass(frozen=True)
class AccountConfig:
    """One account: its name (what a job spec's ``account`` says), its API key, its known limits."""

    name: str
    api_key: str = field(repr=False)
    rate_limits: Mapping[str, int] = field(default_factory=dict)

    @property
    def key_id(self) -> str:
        """The account's identity for shared state (its budget, its cached access token): a hash of its key."""
        return key_id(self.api_key)


def key_id(secret: str) -> str:
    """A short, stable, non-reversible name for a key or a token."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def parse_accounts_file(path: str) -> tuple[AccountConfig, ...]:
    """The accounts of a ``VUQ_ACCOUNTS_FILE``; ValueError names the file, the account and the field."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"accounts"})
    if unknown:
        raise ValueError(f"{path}: unknown table {unknown[0]!r} (only [accounts.NAME] tables)")
    accounts = data.get("accounts", {})
    if not isinstance(accounts, dict) or not accounts:
        raise ValueError(f"{path}: no [accounts.NAME] table")
    return tuple(_account(file, name, entry) for name, entry in accounts.items())


def _account(file: Path, name: str, entry: Any) -> AccountConfig:
    where = f"{file}: accounts.{name}"
    if not ACCOUNT_NAME.fullmatch(name):
        raise ValueError(f"{where}: an account name is letters, digits and . _ - (at most 64), starting with a "
                         "letter or digit")
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be a table")
    unknown = sorted(set(entry) - ACCOUNT_FIELDS)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(sorted(ACCOUNT_FIELDS))})")
    if ("api_key" in entry) == ("api_key_file" in entry):
        raise ValueError(f"{where}: give api_key or api_key_file (one of them)")
    limits = entry.get("rate_limits", "")
    if not isinstance(limits, str):
        raise ValueError(f"{where}.rate_limits: must be a string like \"upload=100,write=200,read=500\"")
    try:
        parsed = parse_rate_limits(limits)
    except ValueError as exc:
        raise ValueError(f"{where}.rate_limits: {exc}") from None
    return AccountConfig(name, _key(file, where, entry), parsed)


def _key(file: Path, where: str, entry: dict[str, Any]) -> str:
    if "api_key" in entry:
        key = entry["api_key"]
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{where}.api_key: must be a non-empty string")
        return key.strip()
    name = entry["api_key_file"]
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}.api_key_file: must be a path")
    path = (file.parent / name).resolve()
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{where}.api_key_file: cannot read {path}: {exc.strerror}") from None
    if not key:
        raise ValueError(f"{where}.api_key_file: {path} is empty")
    return key
