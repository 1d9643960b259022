"""workers.process.health: the health directory is the worker's own (0700, no symlink, nobody else may
write), files are never written through a planted link, and a Redis that may evict keys (or was not
verified over TLS) is refused while one that hides CONFIG is a warning."""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path
from typing import Any

import pytest
import redis

from tasks.settings import Settings
from workers.process import health
from workers.process.health import ActivityWriter, private_dir, redis_verdicts, startup_refusal, unsafe_dir

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing a directory's owner needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_directory_is_created_private(tmp_path: Path) -> None:
    directory = tmp_path / "parent" / "health"
    assert private_dir(directory) is None
    assert mode(directory) == 0o700
    assert private_dir(directory) is None  # it exists now, and it is ours


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "health"
    link.symlink_to(real)
    problem = private_dir(link)
    assert problem and "symlink" in problem and str(link) in problem and "\n" not in problem


@pytest.mark.parametrize("foreign_mode", [0o777, 0o770, 0o1777])
def test_a_directory_others_may_write_to_is_refused(tmp_path: Path, foreign_mode: int) -> None:
    directory = tmp_path / "health"
    directory.mkdir()
    directory.chmod(foreign_mode)
    problem = private_dir(directory)
    assert problem and "writable by others" in problem and f"{foreign_mode & 0o777:o}" in problem


def test_a_directory_others_may_only_read_is_fine(tmp_path: Path) -> None:
    directory = tmp_path / "health"
    directory.mkdir()
    directory.chmod(0o755)
    assert private_dir(directory) is None


@as_root
def test_a_directory_of_another_user_is_refused_to_the_worker(tmp_path: Path) -> None:
    directory = tmp_path / "health"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    problem = private_dir(directory)
    assert problem and "belongs to uid 65534" in problem
    assert unsafe_dir(directory, reading=True) is None  # root's `vuq health` may read a worker's directory


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "health"
    path.write_text("x")
    assert "not a directory" in str(private_dir(path))


def writer(directory: Path) -> ActivityWriter:
    return ActivityWriter(Settings(health_dir=str(directory)), "w1@host", 2, lambda: 0)


def test_a_planted_symlink_is_replaced_never_followed(tmp_path: Path) -> None:
    directory = tmp_path / "health"
    private_dir(directory)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    activity = writer(directory)
    activity.path.symlink_to(victim)  # planted where the worker writes its file
    activity._write()
    assert victim.read_text() == "precious"
    assert not activity.path.is_symlink() and '"node": "w1@host"' in activity.path.read_text()
    assert mode(activity.path) == 0o600
    assert [p.name for p in directory.iterdir()] == [activity.path.name]  # no temporary file left behind


def test_files_are_opened_exclusively_without_following_links() -> None:
    assert health.FILE_FLAGS & os.O_EXCL and health.FILE_FLAGS & os.O_NOFOLLOW and health.FILE_FLAGS & os.O_CREAT


def test_the_writer_refuses_an_unsafe_directory(tmp_path: Path) -> None:
    directory = tmp_path / "health"
    directory.mkdir()
    directory.chmod(0o777)
    with pytest.raises(RuntimeError, match="writable by others"):
        writer(directory).start()


def test_the_worker_refuses_to_start_with_an_unsafe_directory(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "redis_verdicts", lambda settings: [])
    link = tmp_path / "health"
    link.symlink_to(tmp_path)
    settings = Settings(health_dir=str(link))
    assert "symlink" in str(startup_refusal(settings, health_files=True))
    assert startup_refusal(settings) is None  # beat writes no health files


class FakeRedis:
    """What ``_verdict`` asks of a Redis: CONFIG GET, answered or refused as told."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def config_get(self, name: str) -> dict[str, str]:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return {name: self.answer}

    def close(self) -> None:
        pass


def given(monkeypatch: pytest.MonkeyPatch, **answers: Any) -> None:
    """Each Redis (by host name) answers CONFIG GET with its answer."""
    monkeypatch.setattr(health, "redis_client", lambda url, sentinel=None: FakeRedis(answers[url.split("//")[1][:5]]))


def tls_refused() -> redis.ConnectionError:
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as exc:
            raise redis.ConnectionError("Error 1 connecting to store:6380.") from exc
    except redis.ConnectionError as wrapped:
        return wrapped


BOTH = Settings(broker_url="redis://brokr:6379/0", redis_url="redis://store:6379/0")


def test_noeviction_passes_and_one_redis_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    given(monkeypatch, brokr="noeviction", store="noeviction")
    assert [(v.name, v.problem, v.warning) for v in redis_verdicts(BOTH)] == [
        ("VUQ_BROKER_URL", None, None), ("VUQ_REDIS_URL", None, None)]
    given(monkeypatch, **{"127.0": "noeviction"})
    assert [v.name for v in redis_verdicts(Settings())] == ["VUQ_BROKER_URL and VUQ_REDIS_URL"]


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "allkeys-random", "volatile-ttl"])
def test_an_evicting_redis_is_refused_in_one_line_naming_policy_and_fix(monkeypatch: pytest.MonkeyPatch,
                                                                        policy: str) -> None:
    given(monkeypatch, brokr="noeviction", store=policy)
    refusal = startup_refusal(BOTH)
    assert refusal == (f"Redis at store:6379 (VUQ_REDIS_URL) has maxmemory-policy {policy}: it can evict job "
                       "records and queued messages; set maxmemory-policy noeviction (redis.conf, or CONFIG SET "
                       "maxmemory-policy noeviction)")


@pytest.mark.parametrize("refused", [
    redis.exceptions.NoPermissionError("this user has no permissions to run the 'config|get' command"),
    redis.ResponseError("unknown command 'CONFIG', with args beginning with: 'GET'"),
])
def test_config_not_permitted_is_one_warning_and_the_worker_starts(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, refused: Exception) -> None:
    given(monkeypatch, brokr="noeviction", store=refused)
    with caplog.at_level(logging.WARNING, logger="workers.process.health"):
        assert startup_refusal(BOTH) is None
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("cannot check the maxmemory-policy of Redis at store:6379 (VUQ_REDIS_URL): CONFIG GET "
                              "is not permitted") and warning.endswith("make sure it is noeviction")


def test_a_tls_refusal_stops_the_start_an_outage_does_not(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    given(monkeypatch, brokr="noeviction", store=tls_refused())
    assert "its TLS certificate could not be verified" in str(startup_refusal(BOTH))
    given(monkeypatch, brokr=redis.ConnectionError("Error 111 connecting to brokr:6379. Connection refused."),
          store="noeviction")
    with caplog.at_level(logging.WARNING, logger="workers.process.health"):
        assert startup_refusal(BOTH) is None  # Celery keeps trying the broker; `vuq health` checks again
    assert "its maxmemory-policy was not checked" in caplog.text
    verdicts = redis_verdicts(BOTH)
    assert not verdicts[0].reachable and verdicts[0].problem is None
