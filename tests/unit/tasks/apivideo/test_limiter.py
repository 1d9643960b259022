"""tasks.apivideo.limiter: the fleet's limiter for api.video's budgets, per account and class (upload,
write, read), shared through Redis (fakeredis here): paced one slot every (60 s + margin) / limit, resynchronised
from the answers' headers, fair between tenants; and parse_rate_limits for VUQ_RATE_LIMITS. Waits are read from
what ``acquire`` returns; a test sleeps only for the wait the limiter prescribed, the behaviour under test."""

from __future__ import annotations

import itertools
import time

import fakeredis
import pytest

from tasks.apivideo import limiter as limiter_module
from tasks.apivideo.limiter import (
    SPACING_MARGIN_S,
    UNLIMITED_PER_MINUTE,
    WINDOW_S,
    FleetLimiter,
    Turn,
    parse_rate_limits,
)

ACCOUNT = "3f9a1c0d2b4e5f60"
FAST = 1200  # a limit whose spacing (about 52 ms) a test can wait out
SPACING_S = (WINDOW_S + SPACING_MARGIN_S) / FAST


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def limiter(server: fakeredis.FakeServer, configured: dict[str, int] | None = None,
            account: str = ACCOUNT) -> FleetLimiter:
    """One worker's limiter; two calls are two workers sharing the server."""
    return FleetLimiter(fakeredis.FakeRedis(server=server, decode_responses=True), account, configured)


def take(worker: FleetLimiter, request_class: str = "upload", turn: Turn | None = None, tries: int = 50) -> float:
    """Wait for a slot as a step does (the waits the limiter prescribes); when it was granted."""
    for _ in range(tries):
        wait = worker.acquire(request_class, turn)
        if wait == 0:
            return time.monotonic()
        time.sleep(wait)
    raise AssertionError(f"no slot after {tries} tries")


# -- pacing ----------------------------------------------------------------------------------
def test_the_first_request_goes_at_once_and_the_next_waits_one_spacing(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": FAST})
    assert worker.acquire("upload") == 0
    assert SPACING_S * 0.5 < worker.acquire("upload") <= SPACING_S


def test_slots_are_spaced_never_burst_so_no_window_holds_more_than_the_limit(server: fakeredis.FakeServer) -> None:
    fleet = [limiter(server, {"upload": FAST}), limiter(server, {"upload": FAST})]
    granted = [take(fleet[n % 2]) for n in range(12)]
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert min(gaps) >= SPACING_S * 0.9  # Redis's clock spaces them; a few ms of this host's scheduling aside
    # (window + margin) / limit apart: at most limit - 1 admissions in any window, limit with the margin spent


def test_each_class_has_its_own_budget_and_keys(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 3, "write": 4, "read": 5})
    assert [worker.acquire(c) for c in ("upload", "write", "read")] == [0, 0, 0]
    assert all(worker.acquire(c) > 1 for c in ("upload", "write", "read"))  # each one spacing of its own
    assert len({key for keys in worker.keys.values() for key in keys}) == 15


def test_workers_share_one_budget(server: fakeredis.FakeServer) -> None:
    first, second = limiter(server, {"upload": 10}), limiter(server, {"upload": 10})
    assert first.acquire("upload") == 0
    assert 6 < second.acquire("upload") <= (WINDOW_S + SPACING_MARGIN_S) / 10


def test_another_account_has_its_own_budget(server: fakeredis.FakeServer) -> None:
    assert limiter(server, {"upload": 3}).acquire("upload") == 0
    assert limiter(server, {"upload": 3}).acquire("upload") > 0
    assert limiter(server, {"upload": 3}, account="9b8a7c6d5e4f3a2b").acquire("upload") == 0


def test_a_429_of_one_account_never_slows_another(server: fakeredis.FakeServer) -> None:
    limiter(server).observe("upload", 429, {"x-ratelimit-retry-after": "30"})
    assert limiter(server, account="9b8a7c6d5e4f3a2b").acquire("upload") == 0


def test_the_redis_keys_do_not_name_anything_but_the_account_id(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 5})
    worker.acquire("upload")
    worker.observe("upload", 429, {"x-ratelimit-retry-after": "1"})
    keys = fakeredis.FakeRedis(server=server, decode_responses=True).keys("*")
    assert keys and all(key.startswith(f"vuq:budget:{ACCOUNT}:upload:") for key in keys)


# -- configured and learned limits -----------------------------------------------------------
def test_an_unknown_limit_admits_everything(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    assert all(worker.acquire("upload") == 0 for _ in range(50))


def test_a_limit_is_learned_from_the_headers_for_every_worker(server: fakeredis.FakeServer) -> None:
    first, second = limiter(server), limiter(server)
    first.observe("upload", 201, {"x-ratelimit-limit": "5", "x-ratelimit-remaining": "4"})
    assert second.acquire("upload") == 0 and second.acquire("upload") > 10
    assert second.usage("upload") == (2, 5)  # one admitted, one turn waiting


def test_requests_before_the_limit_was_learned_count_once_it_is(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    assert all(worker.acquire("write") == 0 for _ in range(3))
    worker.observe("write", 200, {"x-ratelimit-limit": "5"})
    assert worker.usage("write") == (3, 5)


def test_admissions_before_the_limit_was_learned_pace_the_next_ones(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    assert all(worker.acquire("upload") == 0 for _ in range(2))
    worker.observe("upload", 200, {"x-ratelimit-limit": "2"})
    wait = worker.acquire("upload")  # the window holds two already: the next waits for the first to age out
    assert WINDOW_S - 1 < wait <= WINDOW_S + SPACING_MARGIN_S
    other = limiter(server, {"write": 600})
    assert other.acquire("write") == 0 and 0 < other.acquire("write") <= (WINDOW_S + SPACING_MARGIN_S) / 600


def test_a_configured_limit_wins_over_the_headers(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 3})
    worker.observe("upload", 201, {"x-ratelimit-limit": "1000"})
    assert worker.acquire("upload") == 0 and worker.acquire("upload") > 10
    assert worker.usage("upload")[1] == 3


def test_a_limit_no_fleet_reaches_is_not_paced(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    worker.observe("read", 200, {"x-ratelimit-limit": str(UNLIMITED_PER_MINUTE)})
    assert all(worker.acquire("read") == 0 for _ in range(20))
    assert worker.usage("read")[0] == 0  # not even logged: no round trip


@pytest.mark.parametrize("value", ["", "abc", "0"])
def test_a_missing_or_bad_limit_header_is_ignored(server: fakeredis.FakeServer, value: str) -> None:
    worker = limiter(server)
    worker.observe("upload", 201, {"x-ratelimit-limit": value})
    assert worker.usage("upload") == (0, 0)


# -- resynchronised from the answers ---------------------------------------------------------
def test_a_429_blocks_every_worker_until_retry_after(server: fakeredis.FakeServer) -> None:
    first, second = limiter(server), limiter(server)
    first.observe("upload", 429, {"x-ratelimit-limit": "100", "x-ratelimit-retry-after": "42"})
    assert 41 < second.acquire("upload") <= 42


def test_remaining_zero_blocks_until_retry_after(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"write": 100})
    worker.observe("write", 201, {"x-ratelimit-remaining": "0", "x-ratelimit-retry-after": "20"})
    assert 19 < worker.acquire("write") <= 20


def test_remaining_requests_that_fit_before_the_reset_do_not_block(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"write": 100})
    worker.observe("write", 201, {"x-ratelimit-remaining": "40", "x-ratelimit-retry-after": "20"})
    assert worker.acquire("write") == 0


def test_fewer_remaining_than_the_fleet_would_send_move_the_next_slot(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"write": 60})  # one slot every 62/60 s
    worker.observe("write", 201, {"x-ratelimit-remaining": "2", "x-ratelimit-retry-after": "30"})
    expected = 30 - 2 * (WINDOW_S + SPACING_MARGIN_S) / 60  # the two left fit before the reset, the rest after
    assert expected - 1 < worker.acquire("write") <= expected


def test_a_shorter_block_does_not_cut_a_longer_one(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 100})
    worker.observe("upload", 429, {"x-ratelimit-retry-after": "50"})
    worker.observe("upload", 429, {"x-ratelimit-retry-after": "5"})
    assert worker.acquire("upload") > 45


def test_a_429_without_retry_after_does_not_block(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    worker.observe("upload", 429, {})
    assert worker.acquire("upload") == 0


# -- fair shares ------------------------------------------------------------------------------
def test_a_tenant_that_took_slots_waits_behind_one_that_took_none(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": FAST})
    backfill, live = Turn("backfill"), Turn("live")
    for _ in range(3):
        take(worker, turn=backfill)
    backfill_wait = worker.acquire("upload", backfill)  # both wait for the next slot...
    live_wait = worker.acquire("upload", live)
    time.sleep(max(backfill_wait, live_wait))
    assert worker.acquire("upload", backfill) > 0  # ...which live is back for: backfill is told to wait
    assert worker.acquire("upload", live) == 0


def test_weights_share_the_slots_a_binding_budget_hands_out(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": FAST})
    heavy, light = Turn("live", weight=3), Turn("backfill", weight=1)
    granted: list[str] = []
    turns = {"live": heavy, "backfill": light}
    waits = dict.fromkeys(turns, 0.0)
    while len(granted) < 16:  # both always want a slot: whoever is due asks, the limiter decides
        name = min(waits, key=lambda n: waits[n])
        time.sleep(max(0.0, waits[name] - time.monotonic()))
        wait = worker.acquire("upload", turns[name])
        if wait == 0:
            granted.append(name)
        waits[name] = time.monotonic() + wait
    assert 10 <= granted.count("live") <= 14  # about three slots in four


def test_bulk_takes_only_the_slots_no_interactive_job_waits_for(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": FAST})
    bulk, interactive = Turn("batch", bulk=True), Turn("batch")
    assert worker.acquire("upload", bulk) == 0
    interactive_wait = worker.acquire("upload", interactive)
    bulk_wait = worker.acquire("upload", bulk)
    assert bulk_wait > interactive_wait  # queued behind the interactive turn
    time.sleep(interactive_wait)
    assert worker.acquire("upload", bulk) > 0 and worker.acquire("upload", interactive) == 0


def test_a_waiting_turn_that_never_comes_back_is_forgotten(server: fakeredis.FakeServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limiter_module, "FORGET_WAITER_S", 0.1)
    monkeypatch.setattr(limiter_module, "PRESENT_S", 0.0)
    worker = limiter(server, {"upload": FAST})
    take(worker, turn=Turn("busy"))
    gone_wait = worker.acquire("upload", Turn("gone"))  # it registers, then its job goes away
    time.sleep(gone_wait + 0.2)
    assert worker.acquire("upload", Turn("busy")) == 0  # the slot is not held for it for ever


def test_a_backlog_is_told_to_come_back_spread_over_its_places_in_line(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 30})
    spacing = (WINDOW_S + SPACING_MARGIN_S) / 30
    assert worker.acquire("upload", Turn("backfill", ticket="job-0")) == 0
    waits = [worker.acquire("upload", Turn("backfill", ticket=f"job-{n}")) for n in range(1, 11)]
    assert all(b - a == pytest.approx(spacing, rel=0.05) for a, b in itertools.pairwise(waits))  # one slot each
    again = worker.acquire("upload", Turn("backfill", ticket="job-5"))  # asking again keeps its place
    assert again == pytest.approx(waits[4], abs=0.1)


def test_a_new_tenant_goes_before_a_waiting_backlog(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 30})
    spacing = (WINDOW_S + SPACING_MARGIN_S) / 30
    assert worker.acquire("upload", Turn("backfill", ticket="b-0")) == 0
    backlog = [worker.acquire("upload", Turn("backfill", ticket=f"b-{n}")) for n in range(1, 40)]
    live = worker.acquire("upload", Turn("live", ticket="live-1"))
    assert live <= spacing and backlog[-1] > 30 * spacing  # the next slot, not behind the 39 waiting
    assert worker.acquire("upload", Turn("backfill", ticket="b-1")) > live  # b-1 now waits behind it


def test_every_job_of_a_tenant_holds_its_own_place(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": FAST})
    granted = []
    for job in ("a", "b", "c"):
        take(worker, turn=Turn("t", ticket=job))
        granted.append(job)
    assert granted == ["a", "b", "c"] and worker.usage("upload")[0] == 3  # admitted, none left waiting


# -- usage -----------------------------------------------------------------------------------
def test_usage_counts_the_requests_of_the_last_minute_and_the_waiting_turns(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 10})
    assert worker.usage("upload") == (0, 10)
    assert worker.acquire("upload") == 0
    assert worker.acquire("upload", Turn("other")) > 0
    assert worker.usage("upload") == (2, 10)  # one admitted, one waiting
    assert worker.acquire("read") == 0
    assert worker.usage("read") == (1, 0)  # counted, limit not known yet
    assert worker.usage("write") == (0, 0)


# -- VUQ_RATE_LIMITS -----------------------------------------------------------------------
@pytest.mark.parametrize(("text", "limits"), [
    ("upload=100,write=200,read=500", {"upload": 100, "write": 200, "read": 500}),
    ("upload=40", {"upload": 40}),
    (" read = 7 , write=1,", {"read": 7, "write": 1}),
    ("", {}),
])
def test_rate_limits_parse_any_subset(text: str, limits: dict[str, int]) -> None:
    assert parse_rate_limits(text) == limits


@pytest.mark.parametrize(("text", "message"), [
    ("uploads=10", r"'uploads=10' is not CLASS=N with CLASS one of upload, write, read"),
    ("upload", r"'upload' is not CLASS=N"),
    ("upload=0", r"upload: '0' is not a whole number of requests a minute, at least 1"),
    ("write=-3", r"write: '-3' is not a whole number"),
    ("read=1.5", r"read: '1.5' is not a whole number"),
    ("upload=ten", r"upload: 'ten' is not a whole number"),
    ("upload=10,read=", r"read: '' is not a whole number"),
])
def test_bad_rate_limits_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate_limits(text)
