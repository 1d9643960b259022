"""Upload tokens vuq mints for a job, managed with care: anyone holding a token can upload with it.

A minted token lives only as long as its job needs: its TTL covers the remaining upload at a modest
pace (``ASSUMED_BYTES_PER_S``), it is replaced (and the old one deleted) when it runs short, and it is
deleted at api.video (``DELETE /upload-tokens/{token}``) when the job ends, however it ends: the job
store sets it apart in the same write as the job's final state (``tasks/job/lua/prelude.lua``), the
worker that ended the job deletes it at once, and the janitor deletes those a dead worker left behind.
A producer's own token is never deleted.
"""

from __future__ import annotations

import logging

from tasks.apivideo.keyring import Account, Keyring
from tasks.apivideo.limiter import Turn
from tasks.errors import ApiRejected, RetryableError, Throttled
from tasks.job.store import JobStore

log = logging.getLogger(__name__)
MIN_TTL_S = 3600  # even a small job's token outlives a retry storm
ASSUMED_BYTES_PER_S = 1024 * 1024  # a slow upload; a faster one ends well inside the TTL
MAX_TTL_S = 7 * 24 * 3600
RENEW_BEFORE_S = 600  # a token this close to its expiry is replaced before the next chunk


def ttl_for(remaining_bytes: int) -> int:
    """The TTL of a token minted for ``remaining_bytes`` still to upload."""
    return min(MAX_TTL_S, MIN_TTL_S + max(0, remaining_bytes) // ASSUMED_BYTES_PER_S)


def mint(account: Account, turn: Turn, remaining_bytes: int) -> tuple[str, int]:
    """A new upload token of ``account`` for that much upload, and its TTL."""
    ttl_s = ttl_for(remaining_bytes)
    return account.with_key(turn).create_upload_token(ttl_s), ttl_s


def revoke(store: JobStore, keyring: Keyring, job_id: str) -> bool:
    """Delete the minted token an ended job owes the deletion of; False when a transient failure leaves
    it owed (the janitor tries again)."""
    owed = store.revocation(job_id)
    if owed is None:
        return True
    token, name = owed
    account = keyring.get(name) if name else keyring.default
    if account is None:
        store.revoked(job_id)  # nobody can ever delete it: say so once rather than ask for ever
        log.warning("job %s: its minted token cannot be deleted: the workers hold no key for account %r; it "
                    "expires by itself", job_id, name)
        return True
    try:
        account.with_key(Turn(account.name)).delete_upload_token(token)
    except (RetryableError, Throttled) as exc:
        log.info("job %s: deleting its minted token must wait: %s", job_id, exc)
        return False
    except ApiRejected as exc:
        log.warning("job %s: api.video refused to delete its minted token (%s); it expires by itself", job_id, exc)
    store.revoked(job_id)
    log.info("job %s: the token minted for it was deleted", job_id)
    return True


def replaced(account: Account, turn: Turn, old: str) -> None:
    """An expiring minted token was replaced: delete the old one (best effort: it expires soon anyway)."""
    try:
        account.with_key(turn).delete_upload_token(old)
    except (RetryableError, Throttled, ApiRejected) as exc:
        log.info("the replaced token was not deleted (%s); it expires by itself", exc)
