"""tasks.apivideo.access_tokens.AccessTokens: one api.video access token for every worker, cached in Redis with a TTL of
its lifetime less a margin, authenticated by one caller at a time under redis-py's Lock, dropped and
fetched once more after a 401, and never keyed or stored by the API key itself.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, cast

import fakeredis
import pytest

from tasks.apivideo.access_tokens import AccessTokens
from tasks.apivideo.client import ApiClient
from tasks.constants import ACCESS_TOKEN_REFRESH_MARGIN_S
from tasks.errors import ApiRejected, ApiUnavailable, ConfigError
from tests.unit.tasks.fakes import wait_until

API_KEY = "apikey-0123456789abcdefXYZ"


class FakeApi:
    """Stands in for ApiClient.authenticate; each call hands out a new access token."""

    def __init__(self, failure: Exception | None = None, expires_in: int | None = 3600,
                 during: Callable[[], None] | None = None) -> None:
        self.calls: list[str] = []
        self.failure = failure
        self.expires_in = expires_in
        self.during = during  # runs while authenticating (the lock is held)
        self._lock = threading.Lock()

    def authenticate(self, api_key: str) -> dict[str, Any]:
        with self._lock:
            self.calls.append(api_key)
            number = len(self.calls)
        if self.during:
            self.during()
        if self.failure:
            raise self.failure
        answer: dict[str, Any] = {"access_token": f"at{number}", "refresh_token": "rt"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        return answer


class NotingRedis(fakeredis.FakeRedis):
    """A client that counts (and signals) the Lock objects callers ask it for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.locks = 0
        self.lock_asked = threading.Event()
        self._count = threading.Lock()

    def lock(self, *args: Any, **kwargs: Any) -> Any:
        with self._count:
            self.locks += 1
        self.lock_asked.set()
        return super().lock(*args, **kwargs)


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def client(server: fakeredis.FakeServer) -> NotingRedis:
    return NotingRedis(server=server, decode_responses=True)


def tokens(client: fakeredis.FakeRedis, api: FakeApi, api_key: str | None = API_KEY) -> AccessTokens:
    return AccessTokens(client, cast(ApiClient, api), api_key)


# -- caching -------------------------------------------------------------------------------
def test_one_authentication_serves_many_calls_and_workers(server: fakeredis.FakeServer) -> None:
    api = FakeApi()
    first = tokens(fakeredis.FakeRedis(server=server, decode_responses=True), api)
    second = tokens(fakeredis.FakeRedis(server=server, decode_responses=True), api)
    headers = [first.header(), second.header(), *(first.header() for _ in range(10))]
    assert set(headers) == {"Bearer at1"}
    assert api.calls == [API_KEY]


def test_the_token_is_cached_for_its_lifetime_less_the_margin(client: NotingRedis) -> None:
    access = tokens(client, FakeApi())
    access.header()
    assert client.get(access.cache_key) == "at1"
    expected_ms = (3600 - ACCESS_TOKEN_REFRESH_MARGIN_S) * 1000
    assert expected_ms - 2000 <= client.pttl(access.cache_key) <= expected_ms
    assert not client.exists(access.lock_key)


@pytest.mark.parametrize(("expires_in", "cached_s"), [(100, 50), (2 * ACCESS_TOKEN_REFRESH_MARGIN_S, 120), (1, 1),
                                                      (None, 3600 - ACCESS_TOKEN_REFRESH_MARGIN_S)])
def test_a_short_or_missing_lifetime_is_cached_sensibly(client: NotingRedis, expires_in: int | None,
                                                       cached_s: int) -> None:
    access = tokens(client, FakeApi(expires_in=expires_in))
    access.header()
    assert cached_s * 1000 - 2000 <= client.pttl(access.cache_key) <= cached_s * 1000


def test_when_redis_expires_the_token_the_next_call_authenticates_again(client: NotingRedis) -> None:
    api = FakeApi()
    access = tokens(client, api)
    assert access.header() == "Bearer at1"
    client.pexpire(access.cache_key, 20)  # its TTL runs out on Redis's clock
    wait_until(lambda: not client.exists(access.cache_key), what="the cached token to expire")
    assert access.header() == "Bearer at2"
    assert len(api.calls) == 2


def test_a_token_another_worker_cached_is_used(client: NotingRedis) -> None:
    api = FakeApi()
    access = tokens(client, api)
    client.set(access.cache_key, "cached", ex=600)
    assert access.header() == "Bearer cached"
    assert api.calls == [] and client.locks == 0


# -- 401 and other errors ------------------------------------------------------------------
def test_a_401_drops_the_token_and_authenticates_once_more(client: NotingRedis) -> None:
    api = FakeApi()
    access = tokens(client, api)
    seen: list[str] = []

    def operation(authorization: str) -> str:
        seen.append(authorization)
        if len(seen) == 1:
            raise ApiRejected(401, "Unauthorized")
        return "patched"

    assert access.call(operation) == "patched"
    assert seen == ["Bearer at1", "Bearer at2"]
    assert len(api.calls) == 2
    assert client.get(access.cache_key) == "at2"


def test_a_second_401_is_raised(client: NotingRedis) -> None:
    api = FakeApi()
    seen: list[str] = []

    def operation(authorization: str) -> str:
        seen.append(authorization)
        raise ApiRejected(401, "Unauthorized")

    with pytest.raises(ApiRejected):
        tokens(client, api).call(operation)
    assert len(seen) == 2 and len(api.calls) == 2


@pytest.mark.parametrize("error", [ApiRejected(403, "Forbidden"), ApiUnavailable("down", reason="server_error")])
def test_other_errors_do_not_authenticate_again(client: NotingRedis, error: Exception) -> None:
    api = FakeApi()
    access = tokens(client, api)

    def operation(authorization: str) -> str:
        raise error

    with pytest.raises(type(error)):
        access.call(operation)
    assert len(api.calls) == 1
    assert client.get(access.cache_key) == "at1"  # the token is still good


# -- one authentication at a time ----------------------------------------------------------
def test_concurrent_callers_authenticate_once(client: NotingRedis) -> None:
    callers = 6

    def everyone_waiting() -> None:  # answer only once every caller found no token and asked for the lock
        wait_until(lambda: client.locks >= callers, what="every caller at the lock")

    api = FakeApi(during=everyone_waiting)
    access = tokens(client, api)
    headers: list[str] = []
    threads = [threading.Thread(target=lambda: headers.append(access.header())) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert headers == ["Bearer at1"] * callers
    assert api.calls == [API_KEY]


def test_the_lock_is_redis_py_s_and_never_released_by_a_former_owner(client: NotingRedis) -> None:
    lock_key = tokens(client, FakeApi()).lock_key
    held: list[str | None] = []

    def lock_expires_and_another_takes_it() -> None:
        held.append(cast(str | None, client.get(lock_key)))
        client.set(lock_key, "another-worker", px=30_000)

    access = tokens(client, FakeApi(during=lock_expires_and_another_takes_it))
    assert access.header() == "Bearer at1"  # no LockError escapes
    assert held[0] is not None and re.fullmatch(r"[0-9a-f]{32}", held[0])  # redis-py's owner token
    assert client.get(lock_key) == "another-worker"  # its release checked the token: not ours to drop


def test_a_caller_waits_for_the_peer_holding_the_lock(client: NotingRedis) -> None:
    api = FakeApi()
    access = tokens(client, api)
    client.set(access.lock_key, "peer", px=30_000)
    headers: list[str] = []
    waiter = threading.Thread(target=lambda: headers.append(access.header()))
    waiter.start()
    assert client.lock_asked.wait(5)  # it found no token and went for the lock
    client.set(access.cache_key, "from-peer", ex=600)  # the peer finishes
    client.delete(access.lock_key)
    waiter.join(timeout=10)
    assert headers == ["Bearer from-peer"]
    assert api.calls == []


def test_a_caller_authenticates_itself_when_the_peer_never_finishes(client: NotingRedis,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tasks.apivideo.access_tokens.ACCESS_TOKEN_WAIT_S", 0.2)
    api = FakeApi()
    access = tokens(client, api)
    client.set(access.lock_key, "peer", px=30_000)
    assert access.header() == "Bearer at1"
    assert api.calls == [API_KEY]
    assert client.get(access.lock_key) == "peer"  # not ours to drop
    assert client.get(access.cache_key) == "at1"


def test_a_failed_authentication_releases_the_lock(client: NotingRedis) -> None:
    access = tokens(client, FakeApi(failure=ApiUnavailable("down", reason="connection")))
    with pytest.raises(ApiUnavailable):
        access.header()
    assert not client.exists(access.lock_key)
    assert not client.exists(access.cache_key)


# -- the API key ---------------------------------------------------------------------------
def test_redis_never_holds_the_api_key(client: NotingRedis) -> None:
    access = tokens(client, FakeApi())
    access.header()
    assert API_KEY not in access.cache_key and API_KEY not in access.lock_key
    keys = client.keys("*")
    assert keys
    for key in keys:
        assert API_KEY not in key
        assert API_KEY not in str(client.dump(key))
        assert API_KEY not in str(client.get(key))


def test_different_keys_use_different_caches(client: NotingRedis) -> None:
    assert tokens(client, FakeApi()).cache_key != tokens(client, FakeApi(), "other-key").cache_key


def test_no_api_key_is_a_config_error(client: NotingRedis) -> None:
    api = FakeApi()
    access = tokens(client, api, None)
    assert not access.available
    with pytest.raises(ConfigError, match="VUQ_API_KEY"):
        access.header()
    assert api.calls == []
    assert not client.exists(access.lock_key)
