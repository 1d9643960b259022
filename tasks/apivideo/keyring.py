"""The workers' keyring: every api.video account they hold a key for, each with its own access tokens
and its own budget, and which of them owns an upload token.

A job runs in one account. ``Keyring.get(name)`` is a named account; ``owner_of(token)`` asks the
accounts, ``default`` first and then the others in the order the keyring lists them, which one holds
the token (``GET /upload-tokens/{token}`` with each key until one answers 200) and remembers the answer
in Redis (a day when found, ten minutes when none of ours has it), so a fleet asks once per token.
``token_only(token)`` is a job whose token belongs to no account of the keyring: it never sends an
API key, and its budget is the token's own (learned from the answers' headers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import redis

from tasks.apivideo.access_tokens import AccessTokens
from tasks.apivideo.account import AccountApi
from tasks.apivideo.accounts import DEFAULT_ACCOUNT, AccountConfig, key_id
from tasks.apivideo.client import ApiClient
from tasks.apivideo.limiter import FleetLimiter, Turn
from tasks.constants import TOKEN_OWNER_KEY

OWNER_KNOWN_S = 24 * 3600
NOBODY_S = 600
NOBODY = "-"  # cached: no account of this keyring holds the token


@dataclass(frozen=True)
class Account:
    """One account as a job uses it: its name ("" for a token-only job), its budget, and its API-key calls
    (None for a token-only job: such a job never sends a key)."""

    name: str
    limiter: FleetLimiter
    api: ApiClient
    tokens: AccessTokens | None = None

    @property
    def keyed(self) -> bool:
        return self.tokens is not None

    def uploads(self, turn: Turn) -> ApiClient:
        """The client for this job's uploads: paced by the account's budget, on the job's turn."""
        return self.api.paced(self.limiter.paced(turn))

    def with_key(self, turn: Turn) -> AccountApi:
        """The API-key calls of this account, paced on the job's turn; ConfigError-free only when keyed."""
        assert self.tokens is not None, "a token-only job sends no API key"
        return AccountApi(self.uploads(turn), self.tokens)


class Keyring:
    """The accounts of ``configs`` over one api.video client (its pooled connections) and one Redis.
    ``limits``: the budget per class of every account whose config gives none, and of token-only jobs
    (``VUQ_RATE_LIMITS``; a class not given is learned from the answers)."""

    def __init__(self, client: redis.Redis, api: ApiClient, configs: Sequence[AccountConfig],
                 limits: Mapping[str, int] | None = None) -> None:
        self.redis, self.api, self.limits = client, api, dict(limits or {})
        self.accounts: dict[str, Account] = {}
        self.key_ids: dict[str, str] = {}  # account name -> its key's id: two names for one key are one account
        for config in configs:
            self.key_ids[config.name] = config.key_id
            limiter = FleetLimiter(client, config.key_id, config.rate_limits or self.limits)
            tokens = AccessTokens(client, api.paced(limiter.paced(Turn(config.name))), config.api_key)
            self.accounts[config.name] = Account(config.name, limiter, api, tokens)

    def names(self) -> list[str]:
        return list(self.accounts)

    def get(self, name: str) -> Account | None:
        return self.accounts.get(name)

    @property
    def default(self) -> Account | None:
        return self.accounts.get(DEFAULT_ACCOUNT)

    def token_only(self, token: str) -> Account:
        """A job whose token belongs to no account of the keyring: no key, the token's own budget."""
        return Account("", FleetLimiter(self.redis, "token-" + key_id(token), self.limits), self.api)

    def owns(self, account: Account, token: str, turn: Turn) -> bool:
        """Whether ``account`` holds ``token`` as an active upload token (asked once, then remembered)."""
        cached = self._cached(token)
        if cached:  # the owner (or that no account of ours has it) is already known
            return cached == self.key_ids.get(account.name)
        found = account.with_key(turn).upload_token(token) is not None
        if found:
            self._remember(token, self.key_ids[account.name])
        return found

    def owner_of(self, token: str, turn: Turn) -> Account | None:
        """The account of this keyring that holds ``token``, ``default`` first; None when none does."""
        cached = self._cached(token)
        if cached == NOBODY:
            return None
        ordered = sorted(self.accounts.values(), key=lambda a: a.name != DEFAULT_ACCOUNT)
        known = next((a for a in ordered if cached and self.key_ids[a.name] == cached), None)
        if known:
            return known
        for account in ordered:
            if account.with_key(turn).upload_token(token) is not None:
                self._remember(token, self.key_ids[account.name])
                return account
        self._remember(token, NOBODY, NOBODY_S)
        return None

    def _remember(self, token: str, owner: str, ttl_s: int = OWNER_KNOWN_S) -> None:
        """Note which key holds ``token`` (its id, never a name: two names for one key are one account)."""
        self.redis.set(TOKEN_OWNER_KEY.format(token_id=key_id(token)), owner, ex=ttl_s)

    def _cached(self, token: str) -> str | None:
        return cast(str | None, self.redis.get(TOKEN_OWNER_KEY.format(token_id=key_id(token))))
