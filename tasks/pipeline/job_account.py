"""Which api.video account a job runs in, chosen once at its start, before any request that creates or
uploads, and never changed: a token is used only in the account it belongs to.

* A job that names an account runs there: the workers must hold that account's key, and a token the job
  carries must be one of that account's (``GET /upload-tokens/{token}`` with its key); otherwise the job
  fails in one line naming the account, and its token is never replaced nor used anywhere.
* A job that names no account runs in the account that holds its token when the workers hold that
  account's key (``Keyring.owner_of``: ``default`` first), else token-only: no request with any API key,
  which refuses what only a key can set (title, tags, … : ``Video.key_fields``) before any byte is sent.
* A job without a token runs in its named account, else ``default``, which mints one.
"""

from __future__ import annotations

from tasks.apivideo.accounts import DEFAULT_ACCOUNT
from tasks.apivideo.keyring import Account, Keyring
from tasks.apivideo.limiter import Turn
from tasks.constants import NEEDS_TOKEN
from tasks.errors import ConfigError, PermanentError, SpecError
from tasks.job.record import JobRecord
from tasks.job.spec import BULK, UploadSpec


class UnknownAccount(SpecError):
    """The job names an account the workers hold no key for; resumable once they do."""

    resumable = True

    def __init__(self, name: str, known: list[str]) -> None:
        held = ", ".join(repr(n) for n in known) or "none"
        super().__init__("account", f"the workers hold no key for account {name!r} (they hold: {held})")


class ForeignToken(PermanentError):
    """The job's token is not one of its account's: never used, never replaced; a new token can help."""

    reason = "foreign_token"
    resumable = True

    def __init__(self, name: str) -> None:
        super().__init__(f"token: not an active upload token of account {name!r} (another account's, expired or "
                         "deleted); nothing was created or uploaded")
        self.needs = NEEDS_TOKEN


def turn_of(job: JobRecord, weights: dict[str, int]) -> Turn:
    """Whose share of the account's budget the job's requests take (``JobRecord.tenant``); the job's
    requests hold one place in line (its id as the ticket)."""
    return Turn(job.tenant, job.spec.priority == BULK, weights.get(job.tenant, 1), ticket=job.job_id)


def choose_account(keyring: Keyring, spec: UploadSpec, token: str | None, turn: Turn) -> Account:
    """The account a starting job runs in (see the module's rules); raises before any request that
    creates or uploads when the job cannot run where it says."""
    if spec.account is not None:
        account = keyring.get(spec.account)
        if account is None:
            raise UnknownAccount(spec.account, keyring.names())
        if token and not keyring.owns(account, token, turn):
            raise ForeignToken(spec.account)
        return account
    if not token:
        account = keyring.default
        if account is None:
            raise ConfigError(f"the job has no upload token and the workers hold no API key (account "
                              f"{DEFAULT_ACCOUNT!r}: VUQ_API_KEY) to mint one")
        return account
    owner = keyring.owner_of(token, turn)
    if owner is not None:
        return owner
    needs_key = spec.video.key_fields()
    if needs_key:
        raise SpecError(f"video.{needs_key[0]}", "needs an API key, and the job's upload token belongs to no "
                                                 "account the workers hold a key for (name the job's account, "
                                                 "or leave the metadata out)")
    return keyring.token_only(token)


def account_of(keyring: Keyring, job: JobRecord, token: str | None) -> Account:
    """The account a started job runs in, as its start recorded it."""
    if job.token_only:
        if not token:
            raise ConfigError("the job's upload token is missing from its record")
        return keyring.token_only(token)
    name = job.account or job.spec.account or DEFAULT_ACCOUNT
    account = keyring.get(name)
    if account is None:
        raise UnknownAccount(name, keyring.names())
    return account
