"""The fleet's limiter for api.video's budgets, one per account and request class, shared by every
worker through Redis.

api.video limits each account per minute and per request class (production: uploads 100, writes
200, reads 500; sandbox 40/40/100) and reports each class's window in ``X-RateLimit-*`` headers;
Celery's own ``rate_limit`` is per worker, so a growing fleet would only earn 429s. Before every
request a worker asks ``acquire(class)`` for a slot of its job's account:

* **Paced, never bursting**: one slot every (60 s + margin) / limit, so no 60-second window of
  arrivals at api.video, fixed or sliding, holds more than the limit while a request reaches
  api.video less than the margin after its admission (``SPACING_MARGIN_S``).
* **Resynchronised** from every answer (``observe``): ``X-RateLimit-Limit`` sets the class's limit
  (learned, unless configured); a 429 or ``Remaining: 0`` holds every worker until
  ``X-RateLimit-Retry-After``; fewer requests remaining than the fleet would send before the reset
  (someone else spends the same budget) moves the next slot later.
* **Fair**: a request takes the turn of its job's tenant (``Turn``) and holds a ticket, its job's place
  in line. When the budget binds, slots go in the order of the tickets' virtual starts (start-time fair
  queueing: each ticket a tenant takes a place for moves the tenant's next start on by 1 / its weight,
  ``VUQ_TENANT_WEIGHTS``; a tenant that arrives starts at the clock of the last admission), interactive
  before bulk. A ticket is told to come back when its place is due, so a backlog waits spread over time
  in the delayed set, not in the broker's queue, and a tenant's backlog delays another tenant's job by
  a few slots, not by its length.

One Lua script per call (``lua/*.lua``), Redis's own clock. A 429 for one account never slows another:
every key is the account's (a hash of its API key, or of the upload token for a job with no key).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from tasks.apivideo.client import READ, UPLOAD, WRITE
from tasks.constants import KEY_PREFIX

WINDOW_S = 60.0
SPACING_MARGIN_S = 2.0  # a request arrives at api.video less than this long after its admission
PRESENT_S = 1.5  # a ticket ahead back within this long holds the free slot for itself
FORGET_WAITER_S = 10.0  # a waiting ticket this long past its return is forgotten (its job went away)
CLASSES = (UPLOAD, WRITE, READ)
# api.video's limits are 40-500 a minute; above this nothing is paced (only 429s block)
UNLIMITED_PER_MINUTE = 10_000
BUDGET_KEY = KEY_PREFIX + "budget:{account}:{request_class}:{part}"
INTERACTIVE_TURN, BULK_TURN = "0", "1"
_LUA = Path(__file__).with_name("lua")


@dataclass(frozen=True)
class Turn:
    """Whose turn a request takes: its job's tenant, its priority (bulk only takes the slots no
    interactive job waits for) and the tenant's weight."""

    tenant: str = "default"
    bulk: bool = False
    weight: int = 1
    ticket: str = ""  # the job whose place in line this is ("": one place per turn)

    @property
    def member(self) -> str:
        return f"{BULK_TURN if self.bulk else INTERACTIVE_TURN}|{self.tenant}"


def parse_rate_limits(text: str) -> dict[str, int]:
    """``upload=100,write=200,read=500`` (any subset); ValueError names what is wrong."""
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        request_class, sep, value = item.partition("=")
        request_class = request_class.strip()
        if not sep or request_class not in CLASSES:
            raise ValueError(f"{item!r} is not CLASS=N with CLASS one of {', '.join(CLASSES)}")
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"{request_class}: {value.strip()!r} is not a whole number of requests a minute, "
                             "at least 1")
        limits[request_class] = int(value)
    return limits


class FleetLimiter:
    """Paces one api.video account's requests, per class, across all workers. ``account``: the
    account's identity for shared state (never a key); ``configured``: limits known in advance."""

    def __init__(self, client: redis.Redis, account: str, configured: Mapping[str, int] | None = None) -> None:
        self.redis = client
        self.configured = dict(configured or {})
        self.keys = {c: [BUDGET_KEY.format(account=account, request_class=c, part=part)
                         for part in ("state", "log", "vt", "waiting", "order")] for c in CLASSES}
        self.learned: dict[str, int] = {}  # this process's last view, to skip needless writes
        self._acquire = client.register_script((_LUA / "acquire.lua").read_text(encoding="utf-8"))
        self._observe = client.register_script((_LUA / "observe.lua").read_text(encoding="utf-8"))
        self._usage = client.register_script((_LUA / "usage.lua").read_text(encoding="utf-8"))

    def acquire(self, request_class: str, turn: Turn | None = None) -> float:
        """Take a slot of ``request_class`` now and return 0, or return how many seconds to wait first."""
        configured = self.configured.get(request_class, 0)
        if not configured and self.learned.get(request_class, 0) >= UNLIMITED_PER_MINUTE:
            return 0.0  # a limit no fleet reaches (the emulator's default): no round trip
        turn = turn or Turn()
        wait = self._acquire(keys=self.keys[request_class],
                             args=[configured, turn.member, turn.weight, secrets.token_hex(8), SPACING_MARGIN_S,
                                   PRESENT_S, FORGET_WAITER_S, WINDOW_S, turn.ticket or turn.member])
        return float(wait)

    def observe(self, request_class: str, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer's rate-limit headers (a round trip only when there is something to learn)."""
        limit = _integer(headers.get("x-ratelimit-limit"))
        configured = self.configured.get(request_class, 0)
        learn = limit if limit and not configured and limit != self.learned.get(request_class) else None
        remaining = _integer(headers.get("x-ratelimit-remaining"))
        retry_after = _integer(headers.get("x-ratelimit-retry-after"))
        known = configured or limit or self.learned.get(request_class, 0)
        blocks = retry_after is not None and (status == 429 or remaining == 0)
        # fewer left than this fleet would send before the reset: someone else spends this budget
        short = (retry_after is not None and remaining is not None and 0 < known < UNLIMITED_PER_MINUTE
                 and remaining * (WINDOW_S + SPACING_MARGIN_S) / known < retry_after)
        if learn is None and not blocks and not short:
            return
        self._observe(keys=self.keys[request_class][:1],
                      args=["" if learn is None else learn, status, "" if remaining is None else remaining,
                            "" if retry_after is None else retry_after, configured, SPACING_MARGIN_S, WINDOW_S])
        if learn is not None:
            self.learned[request_class] = learn

    def usage(self, request_class: str) -> tuple[int, int]:
        """Requests of ``request_class`` in hand (admitted in the last minute, and the tickets waiting for a
        slot), and its limit (0: not known yet)."""
        admitted, waiting, limit = self._usage(keys=self.keys[request_class],
                                               args=[self.configured.get(request_class, 0), WINDOW_S])
        return int(admitted) + int(waiting), int(limit)

    def paced(self, turn: Turn) -> TurnPacer:
        """This limiter as a ``Pacer`` for the requests of one turn (a job's tenant and priority)."""
        return TurnPacer(self, turn)


@dataclass(frozen=True)
class TurnPacer:
    """A ``tasks.apivideo.client.Pacer``: the account's limiter, asked on behalf of one turn."""

    limiter: FleetLimiter
    turn: Turn

    def acquire(self, request_class: str) -> float:
        return self.limiter.acquire(request_class, self.turn)

    def observe(self, request_class: str, status: int, headers: Mapping[str, str]) -> None:
        self.limiter.observe(request_class, status, headers)


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
