"""tasks.auth: one access token for every worker, refreshed before expiry and after a 401."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

import fakeredis
import pytest

from tasks.apiclient import ApiClient
from tasks.auth import AccessTokens
from tasks.constants import ACCESS_TOKEN_REFRESH_MARGIN_S
from tasks.errors import ApiRejected, ApiUnavailable, ConfigError
from tests.unit.tasks.helpers import RedisFactory

API_KEY = "apikey-0123456789abcdefXYZ"


class FakeApi:
    """Stands in for ApiClient.authenticate; each call hands out a new access token."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.failure = failure

    def authenticate(self, api_key: str) -> dict[str, Any]:
        self.calls.append(api_key)
        if self.failure:
            raise self.failure
        return {"access_token": f"at{len(self.calls)}", "refresh_token": "rt", "expires_in": 3600}


def tokens(client: fakeredis.FakeRedis, api: FakeApi, api_key: str | None = API_KEY) -> AccessTokens:
    return AccessTokens(client, cast(ApiClient, api), api_key)


def test_two_workers_authenticate_once(redis_factory: RedisFactory) -> None:
    api = FakeApi()
    first, second = tokens(redis_factory(), api), tokens(redis_factory(), api)
    assert first.header() == "Bearer at1"
    assert second.header() == "Bearer at1"
    assert first.header() == "Bearer at1"
    assert api.calls == [API_KEY]


def test_the_token_is_cached_with_its_lifetime(redis_client: fakeredis.FakeRedis) -> None:
    access = tokens(redis_client, FakeApi())
    access.header()
    assert 3590 <= redis_client.ttl(access.cache_key) <= 3600
    assert float(str(redis_client.hget(access.cache_key, "expires_at"))) == pytest.approx(time.time() + 3600, abs=5)
    assert not redis_client.exists(access.lock_key)


def test_a_token_near_expiry_is_refreshed(redis_client: fakeredis.FakeRedis) -> None:
    api = FakeApi()
    access = tokens(redis_client, api)
    redis_client.hset(access.cache_key, mapping={"access_token": "old",
                                                 "expires_at": time.time() + ACCESS_TOKEN_REFRESH_MARGIN_S - 5})
    assert access.header() == "Bearer at1"
    assert len(api.calls) == 1
    assert redis_client.hget(access.cache_key, "access_token") == "at1"


def test_a_token_well_before_expiry_is_reused(redis_client: fakeredis.FakeRedis) -> None:
    api = FakeApi()
    access = tokens(redis_client, api)
    redis_client.hset(access.cache_key, mapping={"access_token": "cached",
                                                 "expires_at": time.time() + ACCESS_TOKEN_REFRESH_MARGIN_S + 60})
    assert access.header() == "Bearer cached"
    assert api.calls == []


def test_call_retries_once_with_a_fresh_token_after_a_401(redis_client: fakeredis.FakeRedis) -> None:
    api = FakeApi()
    access = tokens(redis_client, api)
    seen: list[str] = []

    def operation(auth: str) -> str:
        seen.append(auth)
        if len(seen) == 1:
            raise ApiRejected(401, "Unauthorized")
        return "patched"

    assert access.call(operation) == "patched"
    assert seen == ["Bearer at1", "Bearer at2"]
    assert len(api.calls) == 2


def test_call_gives_up_after_a_second_401(redis_client: fakeredis.FakeRedis) -> None:
    api = FakeApi()
    seen: list[str] = []

    def operation(auth: str) -> str:
        seen.append(auth)
        raise ApiRejected(401, "Unauthorized")

    with pytest.raises(ApiRejected):
        tokens(redis_client, api).call(operation)
    assert len(seen) == 2


@pytest.mark.parametrize("error", [ApiRejected(403, "Forbidden"), ApiUnavailable("down", reason="server_error")])
def test_call_does_not_reauthenticate_on_other_errors(redis_client: fakeredis.FakeRedis, error: Exception) -> None:
    api = FakeApi()

    def operation(auth: str) -> str:
        raise error

    with pytest.raises(type(error)):
        tokens(redis_client, api).call(operation)
    assert len(api.calls) == 1


def test_redis_never_holds_the_api_key(redis_client: fakeredis.FakeRedis) -> None:
    access = tokens(redis_client, FakeApi())
    access.header()
    assert API_KEY not in access.cache_key and API_KEY not in access.lock_key
    for key in redis_client.keys("*"):
        assert API_KEY not in key
        assert API_KEY not in repr(redis_client.hgetall(key))


def test_different_keys_use_different_caches(redis_client: fakeredis.FakeRedis) -> None:
    assert tokens(redis_client, FakeApi()).cache_key != tokens(redis_client, FakeApi(), "other-key").cache_key


def test_no_api_key_is_a_config_error(redis_client: fakeredis.FakeRedis) -> None:
    api = FakeApi()
    access = tokens(redis_client, api, None)
    assert not access.available
    with pytest.raises(ConfigError, match="VUQ_API_KEY"):
        access.header()
    assert api.calls == []
    assert not redis_client.exists(access.lock_key)


def test_a_failed_authentication_releases_the_lock(redis_client: fakeredis.FakeRedis) -> None:
    access = tokens(redis_client, FakeApi(failure=ApiUnavailable("down", reason="connection")))
    with pytest.raises(ApiUnavailable):
        access.header()
    assert not redis_client.exists(access.lock_key)


def fake_clock(monkeypatch: pytest.MonkeyPatch, on_sleep: Any = None) -> list[float]:
    """Replace tasks.auth's time module: sleep advances a monotonic clock instead of waiting."""
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if on_sleep:
            on_sleep()

    monkeypatch.setattr("tasks.auth.time", SimpleNamespace(time=time.time, monotonic=lambda: clock[0], sleep=sleep))
    return clock


def test_a_worker_waits_for_the_peer_that_holds_the_lock(redis_client: fakeredis.FakeRedis,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi()
    access = tokens(redis_client, api)
    redis_client.set(access.lock_key, "1")

    def peer_finishes() -> None:
        redis_client.hset(access.cache_key, mapping={"access_token": "peer", "expires_at": time.time() + 3600})

    fake_clock(monkeypatch, peer_finishes)
    assert access.header() == "Bearer peer"
    assert api.calls == []


def test_a_worker_authenticates_itself_if_the_peer_never_finishes(redis_client: fakeredis.FakeRedis,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi()
    access = tokens(redis_client, api)
    redis_client.set(access.lock_key, "1")
    clock = fake_clock(monkeypatch)
    assert access.header() == "Bearer at1"
    assert clock[0] >= 10.0
    assert len(api.calls) == 1
