"""The job store's Lua scripts (``tasks/job/lua/*.lua``): every change to a job is one of these,
atomic and one round trip.

Each script gets the same keys (``KEYS``, built by ``tasks.job.store.job_keys``)::

    1 the record vuq:job:{id}     2 its lease vuq:lease:{id}      3 every job, by creation
    4-9 one index per state (queued uploading finalizing done failed cancelled), by creation
    10 expiry (id -> when its record goes)   11 the webhook outbox (id -> when it is due)
    12 delayed steps (member -> when to publish it)
    13 tokens to revoke (id -> since when: a token vuq minted, owed its deletion at api.video)
    14 the job's token to revoke (hash: token, account; no TTL, the record may expire first)
    15 (enqueue only) the broker's queue, where a new job's start message goes

so the indexes move in the same script that changes a state and can never disagree with
the records. Times are Redis's own (``TIME``): a value ``NOW`` (a NUL, then ``@now``: no text a
person writes starts so) is written as that moment on Redis's clock, so no host's clock is ever
compared with another's. The scripts that change a job start with ``prelude.lua`` (those helpers);
each file's header comment says its ARGV and its reply.
"""

from __future__ import annotations

from pathlib import Path

LUA_DIR = Path(__file__).with_name("lua")


def _load(name: str, prelude: bool = True) -> str:
    """The script ``lua/<name>.lua``, after the prelude's helpers when it uses them."""
    body = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    return ((LUA_DIR / "prelude.lua").read_text(encoding="utf-8") + body) if prelude else body


CREATE = _load("create")
ENQUEUE = _load("enqueue")
FORGET = _load("forget")
CLAIM = _load("claim")
RENEW = _load("renew")
UPDATE = _load("update")
SCHEDULE = _load("schedule")
POP_DUE = _load("pop_due", prelude=False)
PRUNE = _load("prune", prelude=False)
NOW = _load("now", prelude=False)
COUNT_ATTEMPT = _load("count_attempt", prelude=False)
