"""The processes a vuq system is made of, started on this machine: a private Redis, the
api.video emulator, Celery workers, beat and Flower.

Written once, used by ``vuq demo``, the benchmarks and the tests. Every process runs in its
own process group with its output in a log file (``workers.lab.supervise``); ``prefix`` runs a
worker under another command (``ip netns exec …``, ``setpriv …``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from emulator.client import EmulatorClient
from tasks.outbound import is_loopback
from workers.lab.supervise import Child, free_port, start, wait_until

READY_TIMEOUT_S = 60.0
REDIS_START_TIMEOUT_S = 20.0
_LISTENING = re.compile(r"listening on (http://\S+)")


class ServiceError(RuntimeError):
    """A process could not be started here; the message says what to install or do."""


# -- Redis -----------------------------------------------------------------------------------------
def redis_server_binary() -> str:
    """Where ``redis-server`` is; ServiceError saying how to install it when it is not."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server; "
                           "macOS: brew install redis)")
    return binary


class RedisProcess:
    """What a private redis-server and a sentinel share: one child, started and then pinged until it
    answers (killed if it does not), stopped with SIGTERM or killed."""

    child: Child | None
    data_dir: Path
    host: str
    port: int

    def __post_init__(self) -> None:  # the dataclasses below: a free port unless given, the data dir made
        self.port = self.port or free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _launch(self, name: str, argv: Sequence[str], client: redis.Redis, what: str) -> None:
        self.child = start(name, argv, os.environ, self.data_dir)
        try:
            wait_until(lambda: answers(self.child, client, what), REDIS_START_TIMEOUT_S, what)
        except BaseException:
            self.child.kill()  # one that runs but does not answer would outlive its caller
            raise
        finally:
            client.close()

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.alive

    def stop(self) -> None:
        """SIGTERM: Redis writes its AOF and exits."""
        if self.child is not None:
            self.child.stop()

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill()


@dataclass
class RedisServer(RedisProcess):
    """A private ``redis-server`` on a free port of ``host``, data in ``data_dir``; with ``replica_of``
    (host, port) a replica of that primary (``tests.support.sentinel`` builds a failover group from these)."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    aof: bool = False
    password: str | None = field(default=None, repr=False)
    extra_args: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()
    child: Child | None = None
    replica_of: tuple[str, int] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def argv(self) -> list[str]:
        argv = [*self.prefix, redis_server_binary(), "--bind", self.host, "--port", str(self.port),
                "--dir", str(self.data_dir), "--save", "", "--maxmemory-policy", "noeviction", "--logfile", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else ["--appendonly", "no"]
        if not self.password and not is_loopback(self.host):
            # Redis 7 answers -DENIED to every non-loopback client of a server without a password, even
            # with an explicit --bind; a caller binding to another address means to be reached there.
            argv += ["--protected-mode", "no"]
        if self.password:  # --masterauth too: a replica, or a primary demoted by a failover, needs it
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of:
            argv += ["--replicaof", self.replica_of[0], str(self.replica_of[1])]
        return [*argv, *self.extra_args]

    def client(self, **options: Any) -> redis.Redis:
        """A client of this server (``options``: redis-py's, e.g. ``decode_responses=True``)."""
        return redis.Redis(host=self.host, port=self.port, password=self.password, **options)

    def start(self) -> RedisServer:
        self._launch(f"redis-{self.port}", self.argv(), self.client(socket_connect_timeout=0.5),
                     f"redis-server on port {self.port}")
        return self

    def restart(self) -> None:
        self.stop()
        self.start()


def answers(child: Child | None, client: redis.Redis, what: str) -> bool:
    """Whether a Redis (or sentinel) we started answers; ServiceError with its log if it exited."""
    if child is not None and not child.alive:
        raise ServiceError(f"{what} exited:\n{child.log()[-2000:]}")
    return _pings(client)


def redis_answers(url: str) -> bool:
    """Whether a Redis answers at ``url`` within a second."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return _pings(client)
    finally:
        client.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


# -- the emulator ----------------------------------------------------------------------------------
class EmulatorProcess(EmulatorClient):
    """A running emulator (``python -m emulator``) and its client (of the first key's account).

    ``api_keys`` holds every key, the first one first; ``for_key(key)`` calls as another account.
    """

    def __init__(self, child: Child, url: str, api_key: str, data_dir: Path,
                 api_keys: Sequence[str] = ()) -> None:
        super().__init__(url, api_key)
        self.child = child
        self.data_dir = data_dir
        self.api_keys = _distinct_keys(api_key, api_keys)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.proc

    def stop(self) -> None:
        self.child.stop(5.0)


def _distinct_keys(api_key: str, api_keys: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([api_key, *api_keys]))


@contextmanager
def _key_files(keys: Sequence[str]) -> Iterator[list[str]]:
    """``--api-key-file`` arguments for ``keys``: one file each (mode 0600) in a private temporary
    directory (0700), removed on exit, so no key shows on a command line."""
    directory = tempfile.mkdtemp(prefix="vuq-emulator-keys-")
    try:
        args: list[str] = []
        for index, key in enumerate(keys):
            path = os.path.join(directory, f"key-{index}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(key)
            args += ["--api-key-file", path]
        yield args
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def start_emulator(data_dir: Path, api_key: str, log_dir: Path, args: Sequence[str] = (),
                   host: str = "127.0.0.1", port: int = 0, prefix: Sequence[str] = (),
                   api_keys: Sequence[str] = ()) -> EmulatorProcess:
    """Start the emulator on ``host`` (port 0: a free one) and wait for its address.

    ``api_key`` is the first (default) account; ``api_keys`` add accounts. Every key is passed in
    a file (``--api-key-file``), read before the emulator says it listens, then removed.
    """
    keys = _distinct_keys(api_key, api_keys)
    with _key_files(keys) as key_args:
        argv = [*prefix, sys.executable, "-m", "emulator", "--host", host, "--port", str(port),
                "--data-dir", str(data_dir), *key_args, *args]
        child = start(f"emulator-{uuid.uuid4().hex[:6]}", argv, os.environ, log_dir)
        _ready_or_killed(child, lambda log: _LISTENING.search(log) is not None)
    url = _LISTENING.search(child.log()).group(1)  # type: ignore[union-attr]
    return EmulatorProcess(child, url, api_key, data_dir, keys)


@contextmanager
def running_emulator(data_dir: Path, api_key: str = "local-api-key", args: Sequence[str] = (),
                     api_keys: Sequence[str] = ()) -> Iterator[EmulatorProcess]:
    """``start_emulator`` on 127.0.0.1 (logs next to ``data_dir``), stopped on exit; ``api_keys``
    are accounts besides ``api_key``'s."""
    emu = start_emulator(data_dir, api_key, data_dir.parent / f"{data_dir.name}-logs", args,
                         api_keys=api_keys)
    try:
        yield emu
    finally:
        emu.stop()


# -- Celery processes ------------------------------------------------------------------------------
def worker_env(broker_url: str, api_base_url: str, api_key: str | None, roots: Sequence[Path], queue: str,
               **extra: str) -> dict[str, str]:
    """The environment of a worker: this process's without its VUQ_* settings, plus these and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VUQ_")}
    env.update({"VUQ_BROKER_URL": broker_url, "VUQ_API_BASE_URL": api_base_url,
                "VUQ_ALLOWED_ROOTS": os.pathsep.join(map(str, roots)), "VUQ_QUEUE": queue,
                "PYTHONUNBUFFERED": "1"})
    if api_key:
        env["VUQ_API_KEY"] = api_key
    env.update(extra)
    return env


def start_worker(env: Mapping[str, str], log_dir: Path, concurrency: int = 2, pool: str = "prefork",
                 name: str | None = None, prefix: Sequence[str] = (), extra_args: Sequence[str] = ()) -> Child:
    """``celery -A workers worker`` on the env's queue; returns once it says it is ready."""
    name = name or f"w{uuid.uuid4().hex[:6]}"
    argv = [*prefix, sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", env["VUQ_QUEUE"],
            "-c", str(concurrency), "--pool", pool, "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
            "--loglevel", "INFO", *extra_args]
    child = start(name, argv, env, log_dir)
    _ready_or_killed(child, lambda log: " ready." in log)
    return child


def start_beat(env: Mapping[str, str], log_dir: Path, prefix: Sequence[str] = ()) -> Child:
    """``celery beat`` with this app (it schedules the janitor); its schedule file lives in ``log_dir``."""
    name = f"beat-{uuid.uuid4().hex[:6]}"
    argv = [*prefix, sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
            "-s", str(log_dir / f"{name}-schedule")]
    child = start(name, argv, env, log_dir)
    _ready_or_killed(child, lambda log: "beat: Starting" in log)
    return child


def start_flower(env: Mapping[str, str], log_dir: Path, port: int, address: str = "127.0.0.1",
                 extra_args: Sequence[str] = ()) -> Child:
    """Flower for this app on ``address:port``; returns once it listens."""
    argv = [sys.executable, "-m", "workers.console", "flower", f"--port={port}", f"--address={address}", *extra_args]
    child = start(f"flower-{port}", argv, env, log_dir)
    _ready_or_killed(child, lambda log: "Visit me at" in log)
    return child


def _ready_or_killed(child: Child, sign: Callable[[str], bool]) -> None:
    """Wait for ``sign`` in the child's log; a child that never shows it is killed, not left running."""
    try:
        child.wait_for(sign, READY_TIMEOUT_S)
    except RuntimeError:
        child.kill()
        raise
