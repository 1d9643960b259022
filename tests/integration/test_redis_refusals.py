"""What a worker, beat and `vuq health` refuse, with real processes: a Redis that can evict keys (a private
``redis-server --maxmemory-policy allkeys-lru``), and a health directory someone could tamper with (a
planted symlink, a directory others may write to). A Redis that hides CONFIG from vuq's ACL user is one
warning, and the worker starts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks.constants import MIB
from tasks.job.record import State
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_for
from workers.lab.services import RedisServer

EVICTING = "has maxmemory-policy allkeys-lru: it can evict job records and queued messages; set maxmemory-policy " \
           "noeviction (redis.conf, or CONFIG SET maxmemory-policy noeviction)"
ACL_USER, ACL_PASSWORD = "vuq", "vuq-acl-password"


@pytest.fixture(scope="module")
def evicting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("lru")), extra_args=("--maxmemory-policy", "allkeys-lru"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def clean_env(**env: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("VUQ_")}, **env}


def celery(command: str, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """``celery -A workers worker|beat`` that must refuse to start (it would run until stopped otherwise)."""
    options = {"worker": ["-Q", "vuq-refused", "-c", "1", "--without-gossip", "--without-mingle"],
               "beat": ["-s", str(tmp / "beat-schedule")]}[command]
    return subprocess.run([sys.executable, "-m", "celery", "-A", "workers", command, *options], env=env,
                          capture_output=True, text=True, timeout=60)


def refusal(out: subprocess.CompletedProcess[str], role: str) -> str:
    lines = [line for line in (out.stdout + out.stderr).splitlines() if "refuses to start" in line]
    assert len(lines) == 1, out.stdout + out.stderr
    assert out.returncode == 2 and " ready." not in out.stdout + out.stderr
    return lines[0].split(f"vuq {role} refuses to start: ", 1)[1]


def test_a_worker_does_not_start_on_an_evicting_redis(evicting: RedisServer, tmp_path: Path) -> None:
    out = celery("worker", clean_env(VUQ_BROKER_URL=evicting.url, VUQ_HEALTH_DIR=str(tmp_path / "h")), tmp_path)
    assert refusal(out, "worker") == f"Redis at 127.0.0.1:{evicting.port} (VUQ_BROKER_URL and VUQ_REDIS_URL) {EVICTING}"


def test_beat_does_not_start_on_an_evicting_redis(evicting: RedisServer, tmp_path: Path) -> None:
    out = celery("beat", clean_env(VUQ_BROKER_URL=evicting.url), tmp_path)
    assert refusal(out, "beat") == f"Redis at 127.0.0.1:{evicting.port} (VUQ_BROKER_URL and VUQ_REDIS_URL) {EVICTING}"


def test_an_evicting_job_store_is_refused_as_well(evicting: RedisServer, redis_url: str, tmp_path: Path) -> None:
    env = clean_env(VUQ_BROKER_URL=redis_url, VUQ_REDIS_URL=evicting.url, VUQ_HEALTH_DIR=str(tmp_path / "h"))
    assert refusal(celery("worker", env, tmp_path), "worker") == (
        f"Redis at 127.0.0.1:{evicting.port} (VUQ_REDIS_URL) {EVICTING}")


def test_vuq_health_fails_on_an_evicting_redis_with_the_line(evicting: RedisServer) -> None:
    out = subprocess.run([sys.executable, "-m", "workers.console", "health"], env=clean_env(
        VUQ_BROKER_URL=evicting.url), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    names = "VUQ_BROKER_URL and VUQ_REDIS_URL"
    assert out.stderr == f"vuq health: Redis at 127.0.0.1:{evicting.port} ({names}) {EVICTING}\n"


def test_a_planted_symlink_as_the_health_directory_stops_the_worker(redis_url: str, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    (tmp_path / "health").symlink_to(real)
    out = celery("worker", clean_env(VUQ_BROKER_URL=redis_url, VUQ_HEALTH_DIR=str(tmp_path / "health")), tmp_path)
    assert refusal(out, "worker") == (f"health directory {tmp_path / 'health'} is a symlink; VUQ_HEALTH_DIR must "
                                      "name a real directory")
    assert list(real.iterdir()) == []


def test_a_health_directory_others_may_write_to_stops_the_worker(redis_url: str, tmp_path: Path) -> None:
    shared = tmp_path / "health"
    shared.mkdir()
    shared.chmod(0o777)
    out = celery("worker", clean_env(VUQ_BROKER_URL=redis_url, VUQ_HEALTH_DIR=str(shared)), tmp_path)
    assert refusal(out, "worker").startswith(f"health directory {shared} is writable by others (mode 0777)")


@pytest.fixture(scope="module")
def no_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis whose vuq user may do everything but administer it (docs/security.md's rule, without the
    CONFIG GET it grants: as some managed Redis services set users up)."""
    server = RedisServer(Path(tmp_path_factory.mktemp("acl")))
    server.start()
    admin = server.client()
    admin.acl_setuser(ACL_USER, enabled=True, passwords=[f"+{ACL_PASSWORD}"], keys=["*"], channels=["*"],
                      commands=["+@all", "-@dangerous", "+info"])
    admin.close()
    try:
        yield f"redis://{ACL_USER}@127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def acl_stack(tmp_path_factory: pytest.TempPathFactory, no_config: str) -> Iterator[Stack]:
    tmp = Path(tmp_path_factory.mktemp("acl-stack"))
    with running_stack(tmp, no_config, workers=1, concurrency=1, VUQ_REDIS_PASSWORD=ACL_PASSWORD,
                       VUQ_HEALTH_DIR=str(tmp / "health")) as stack:
        yield stack


def test_config_hidden_by_an_acl_is_one_warning_and_the_worker_starts(acl_stack: Stack) -> None:
    path, _ = acl_stack.file("acl.bin", 6 * MIB, seed=31)
    job = acl_stack.wait_final(acl_stack.enqueue(path, chunk_size="5MiB"), 60)
    assert job.state == State.DONE, job.error  # nothing else vuq does needs more than the ACL grants
    log = acl_stack.workers[0].log()
    warnings = [line for line in log.splitlines() if "cannot check the maxmemory-policy" in line]
    assert len(warnings) == 1 and "CONFIG GET is not permitted" in warnings[0], log
    assert ACL_PASSWORD not in log
    client = redis.Redis.from_url(acl_stack.settings.broker_url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.config_get("maxmemory-policy")  # the ACL really hides it
    client.close()


def test_vuq_health_notes_the_unchecked_policy_and_stays_healthy(acl_stack: Stack) -> None:
    def healthy() -> subprocess.CompletedProcess[str] | None:
        out = subprocess.run([sys.executable, "-m", "workers.console", "health"], env=acl_stack.env,
                             capture_output=True, text=True, timeout=60)
        return out if out.returncode == 0 else None

    out = wait_for(healthy, 30, "a healthy report")
    assert out.stdout.startswith("ok: ") and "CONFIG GET is not permitted" in out.stdout
    assert out.stdout.count("\n") == 1 and ACL_PASSWORD not in out.stdout + out.stderr
