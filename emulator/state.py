"""Everything one running emulator holds, shared by the routes and the middleware."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emulator.accounts import Accounts
from emulator.auth import Auth
from emulator.faults import FaultSettings, FaultState
from emulator.ratelimit import RateLimiter
from emulator.requestlog import RequestLog
from emulator.store import Store


@dataclass
class EmulatorState:
    """The accounts, the store, authentication, fault settings, rate-limit windows and request log."""

    accounts: Accounts
    store: Store
    auth: Auth
    faults: FaultState = field(default_factory=FaultState)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    log: RequestLog = field(default_factory=RequestLog)

    @classmethod
    def open(
        cls, data_dir: Path, api_keys: str | Sequence[str], access_token_ttl_s: int, faults: FaultSettings
    ) -> EmulatorState:
        """State over ``data_dir`` (created if missing; existing videos are loaded), one account per key.

        The first key's account is the default one: it owns what an older,
        single-account data directory holds. Raises ValueError without a key.
        """
        accounts = Accounts([api_keys] if isinstance(api_keys, str) else api_keys)
        store = Store(data_dir, accounts.default.id)
        return cls(accounts=accounts, store=store, auth=Auth(accounts, access_token_ttl_s),
                   faults=FaultState(settings=faults))

    def reset(self, account: str | None = None) -> None:
        """The reset hook: wipe videos, tokens, auth tokens, rate-limit windows and the log entries
        of ``account``, or of every account (then the fault counters too).

        Fault settings, per-class limits included, are kept.
        """
        self.store.wipe(account)
        self.auth.clear(account)
        self.limiter.clear(account)
        self.log.clear(account)
        if account is None:
            self.faults.reset_counters()
