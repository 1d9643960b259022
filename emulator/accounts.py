"""Accounts: one per API key given on the command line (``--api-key``, ``--api-key-file``).

Every video, upload token, access/refresh token and rate-limit window belongs
to one account. An account is known by a stable, non-secret id derived from
its key (:func:`account_id`), which is what the data directory, the request
log and the test hooks show; the key itself is only kept in memory.

Standard library only: :mod:`emulator.client` uses :func:`account_id` from any install.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

ACCOUNT_ID_PREFIX = "acct-"
ACCOUNT_ID_HEX_CHARS = 10


def account_id(api_key: str) -> str:
    """The account id of ``api_key``: ``acct-`` + the first 10 hex characters of its sha256."""
    return ACCOUNT_ID_PREFIX + hashlib.sha256(api_key.encode()).hexdigest()[:ACCOUNT_ID_HEX_CHARS]


@dataclass(frozen=True)
class Account:
    """One account: its id and its API key."""

    id: str
    api_key: str = field(repr=False)


class Accounts:
    """The accounts in the order their keys were given; the first one is the default.

    The default account receives what an older, single-account data directory
    holds (records without an account).
    """

    def __init__(self, api_keys: Iterable[str]) -> None:
        self._by_id: dict[str, Account] = {}
        for key in api_keys:
            if not key:
                raise ValueError("an API key must not be empty")
            account = Account(account_id(key), key)
            known = self._by_id.get(account.id)
            if known is not None and known.api_key != key:
                raise ValueError(f"two API keys share the account id {account.id}")
            self._by_id.setdefault(account.id, account)  # a key given twice is one account
        if not self._by_id:
            raise ValueError("at least one API key is required")

    def __iter__(self) -> Iterator[Account]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, account: object) -> bool:
        return account in self._by_id

    @property
    def default(self) -> Account:
        """The first account given."""
        return next(iter(self._by_id.values()))

    def by_key(self, api_key: object) -> Account | None:
        """The account of ``api_key``, or None for anything that is not one of the keys."""
        if not isinstance(api_key, str) or not api_key:
            return None
        account = self._by_id.get(account_id(api_key))
        if account is None or not secrets.compare_digest(account.api_key.encode(), api_key.encode()):
            return None
        return account
