"""Is this host's worker alive and consuming? ``vuq health`` answers for liveness probes.

A worker's main process writes a small file every few seconds (``VUQ_HEALTH_DIR``, default
the temp dir): when it last received a task, how many it runs, its concurrency. ``vuq health``
then fails (exit 1, one line) when this host cannot reach Redis, when a worker stopped writing
(hung or dead), or when a worker with a free slot has received nothing for
``VUQ_HEALTH_IDLE_S`` while messages wait in its queue (the "deaf" worker a half-open broker
connection leaves), when a step running on this host has moved no byte for
``VUQ_SOURCE_WINDOW_S`` (a source or an api.video connection stalled under a lease that keeps
renewing), or when the broker or the job store may evict keys. Exit 0 with a summary otherwise.

The directory is the worker's own: created 0700, and refused when it is a symlink, belongs to
someone else or others may write to it (they could plant files or links there). Files are written
to a fresh temporary name opened with ``O_EXCL | O_NOFOLLOW`` and renamed into place, so a planted
symlink is never followed.

``redis_verdicts`` is what workers and beat check when they start (``startup_refusal``) and
``vuq health`` checks every time: each Redis answers, over TLS it was verified, and its
``maxmemory-policy`` is ``noeviction`` (an evicting Redis silently loses job records and queued
messages). A Redis that does not let this user run ``CONFIG GET`` (an ACL, a managed Redis that
renamed the command) is a warning, not a refusal. Producers do not check: that would cost every
enqueue a round trip.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from tasks.job import ACTIVE_STATES, job_store, redis_client, unreachable, where
from tasks.settings import Settings

log = logging.getLogger(__name__)
WRITE_EVERY_S = 2.0
STALE_AFTER_WRITES = 6  # a file this many periods old: the worker stopped reporting
HEALTH_DIR_MODE = 0o700
NO_EVICTION = "noeviction"
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def health_dir(settings: Settings) -> Path:
    return Path(settings.health_dir or os.path.join(tempfile.gettempdir(), "vuq-health"))


def unsafe_dir(directory: Path, reading: bool = False) -> str | None:
    """Why ``directory`` cannot hold health files (one line), or None. A reader running as root may
    read a worker's directory; everything else must be this user's own, not a symlink, and writable
    by nobody else."""
    try:
        info = os.lstat(directory)
    except OSError as exc:
        return f"health directory {directory}: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return f"health directory {directory} is a symlink; VUQ_HEALTH_DIR must name a real directory"
    if not stat.S_ISDIR(info.st_mode):
        return f"health directory {directory} is not a directory"
    if info.st_uid != os.geteuid() and not (reading and os.geteuid() == 0):
        return (f"health directory {directory} belongs to uid {info.st_uid}, not this user ({os.geteuid()}); "
                "set VUQ_HEALTH_DIR to a directory of this user's")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"health directory {directory} is writable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                "chmod 700 it, or set VUQ_HEALTH_DIR to a private directory")
    return None


def private_dir(directory: Path) -> str | None:
    """Create ``directory`` (0700) unless it exists; why it cannot hold health files, or None."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, HEALTH_DIR_MODE)
    except FileExistsError:
        pass  # made earlier (or by someone else: checked below)
    except OSError as exc:
        return f"cannot create health directory {directory}: {exc.strerror}"
    return unsafe_dir(directory)


@dataclass(frozen=True)
class Activity:
    """What a worker last said about itself (times: this host's monotonic-free wall clock)."""

    node: str
    pid: int
    queue: str
    concurrency: int
    active: int
    last_received: float
    written: float


class ActivityWriter:
    """A daemon thread in the worker's main process writing its ``Activity`` every few seconds."""

    def __init__(self, settings: Settings, node: str, concurrency: int, active: Callable[[], int]) -> None:
        self.path = health_dir(settings) / f"{node.replace('/', '_')}.json"
        self.node, self.queue, self.concurrency, self.active = node, settings.queue, concurrency, active
        self.started = self.last_received = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vuq-health", daemon=True)

    def received(self) -> None:
        self.last_received = time.time()

    def start(self) -> None:
        problem = private_dir(self.path.parent)
        if problem:
            raise RuntimeError(problem)
        self._write()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        while not self._stop.wait(WRITE_EVERY_S):
            self._write()

    def _write(self) -> None:
        data = Activity(self.node, os.getpid(), self.queue, self.concurrency, self.active(), self.last_received,
                        time.time())
        tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:12]}.tmp")  # a fresh name each time
        fd = os.open(tmp, FILE_FLAGS, 0o600)  # never follows nor reuses what is already there
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(vars(data)))
            os.replace(tmp, self.path)  # readers never see half a file; a link at the path is replaced, not followed
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def check(settings: Settings, idle_s: float | None = None, node: str | None = None) -> tuple[bool, str]:
    """(healthy, one line) for the workers of this host (or the one named ``node``)."""
    idle_s = settings.health_idle_s if idle_s is None else idle_s
    try:
        broker = redis_client(settings.broker_url, settings.sentinel)
        broker.ping()
        waiting = int(broker.llen(settings.queue))
    except redis.RedisError as exc:
        return False, unreachable(settings.broker_url, exc)
    verdicts = redis_verdicts(settings)
    failed = next((v.problem or v.warning for v in verdicts if v.problem or not v.reachable), None)
    if failed:  # a Redis that may evict, was not verified, or (the job store) does not answer
        return False, failed
    directory = health_dir(settings)
    unsafe = unsafe_dir(directory, reading=True) if directory.exists() or directory.is_symlink() else None
    if unsafe:
        return False, unsafe
    workers = [w for w in _activities(directory) if node is None or w.node == node]
    if not workers:
        return False, f"no worker reports in {directory}" + (f" as {node!r}" if node else "")
    now = time.time()
    for worker in workers:
        if now - worker.written > STALE_AFTER_WRITES * WRITE_EVERY_S:
            return False, f"worker {worker.node} stopped reporting {now - worker.written:.0f}s ago (hung or dead)"
        free = worker.active < worker.concurrency
        if waiting and free and now - worker.last_received > idle_s:
            return False, (f"worker {worker.node} has received nothing for {now - worker.last_received:.0f}s "
                           f"while {waiting} message(s) wait in {settings.queue!r} (a deaf broker connection?)")
    stalled = stalled_step(settings)
    if stalled:
        return False, stalled
    summary = ", ".join(f"{w.node} running {w.active}/{w.concurrency}" for w in workers)
    notes = "".join(f"; {v.warning}" for v in verdicts if v.warning)
    return True, f"ok: {summary}; {waiting} waiting in {settings.queue!r}{notes}"


def stalled_step(settings: Settings, host: str | None = None) -> str | None:
    """A step held on ``host`` (this one) that has moved no byte for ``VUQ_SOURCE_WINDOW_S`` since it
    began or last moved one: the job, the process and for how long; None when every one moves. Reads
    only the active jobs' leases, then the records of those held."""
    store = job_store(settings)
    host = host or socket.gethostname()
    active = [job_id for state in ACTIVE_STATES for job_id in store.ids_in(state)]
    held = [job_id for job_id, lease in zip(active, store.leases(active), strict=True) if lease]
    if not held:
        return None
    now = store.now()
    for job in store.records(held):
        holder = store.lease_holder(job.job_id) or ""
        still = now - (job.moved_at or now)
        if holder.startswith(f"{host}:") and still > settings.source_window_s:
            return (f"job {job.job_id} ({job.state}): its step in process {holder.split(':')[1]} has moved no byte "
                    f"for {still:.0f}s "
                    f"(VUQ_SOURCE_WINDOW_S is {settings.source_window_s:g}): a stalled source or api.video connection")
    return None


def _activities(directory: Path) -> list[Activity]:
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            found.append(Activity(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # a file being replaced, or not ours
    return found


# -- Redis that can lose keys ------------------------------------------------------------------------
@dataclass(frozen=True)
class RedisVerdict:
    """What checking one Redis found: a reason to refuse (``problem``), a reason to carry on with a
    warning (``warning``), or neither; ``reachable`` False when it did not answer at all."""

    name: str
    problem: str | None = None
    warning: str | None = None
    reachable: bool = True


def redis_verdicts(settings: Settings) -> list[RedisVerdict]:
    """The broker's and the job store's Redis (once when they are the same): each answers, was
    verified over TLS, and never evicts keys."""
    names: dict[str, list[str]] = {}
    for url, name in ((settings.broker_url, "VUQ_BROKER_URL"), (settings.redis_url, "VUQ_REDIS_URL")):
        names.setdefault(url, []).append(name)
    return [_verdict(settings, url, " and ".join(found)) for url, found in names.items()]


def _verdict(settings: Settings, url: str, name: str) -> RedisVerdict:
    shown = f"Redis at {where(url, settings.sentinel)} ({name})"
    client = redis_client(url, settings.sentinel)
    try:
        found = client.config_get("maxmemory-policy")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        line = unreachable(url, exc, f"Redis ({name})")
        if _tls_failed(exc):  # a certificate that was not verified is a refusal, not an outage
            return RedisVerdict(name, problem=line)
        return RedisVerdict(name, warning=line, reachable=False)
    except redis.ResponseError as exc:  # NOPERM (an ACL), or a managed Redis that renamed CONFIG
        return RedisVerdict(name, warning=f"cannot check the maxmemory-policy of {shown}: CONFIG GET is not "
                                          f"permitted ({exc}); make sure it is {NO_EVICTION}")
    finally:
        client.close()
    policy = str(found.get("maxmemory-policy", NO_EVICTION))
    if policy != NO_EVICTION:
        return RedisVerdict(name, problem=f"{shown} has maxmemory-policy {policy}: it can evict job records and "
                                          f"queued messages; set maxmemory-policy {NO_EVICTION} (redis.conf, or "
                                          f"CONFIG SET maxmemory-policy {NO_EVICTION})")
    return RedisVerdict(name)


def _tls_failed(exc: BaseException) -> bool:
    """Whether a TLS handshake failed behind ``exc`` (redis-py chains the ``ssl`` error)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def startup_refusal(settings: Settings, health_files: bool = False) -> str | None:
    """Why a worker (``health_files``: it writes them) or beat must not start, in one line; None when
    it may. Warnings (CONFIG not permitted, Redis not answering yet) are logged, and it starts."""
    if health_files:
        unsafe = private_dir(health_dir(settings))
        if unsafe:
            return unsafe
    for verdict in redis_verdicts(settings):
        if verdict.problem:
            return verdict.problem
        if verdict.warning:  # Celery keeps trying a broker that is not up yet; `vuq health` checks again
            log.warning("%s%s", verdict.warning, "" if verdict.reachable else "; its maxmemory-policy was not checked")
    return None
