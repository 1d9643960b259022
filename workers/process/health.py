"""Is this host's worker alive and consuming? ``vuq health`` answers for liveness probes.

A worker's main process writes a small file every few seconds (``VUQ_HEALTH_DIR``, default
the temp dir): when it last received a task, how many it runs, its concurrency. ``vuq health``
then fails (exit 1, one line) when this host cannot reach Redis, when a worker stopped writing
(hung or dead), or when a worker with a free slot has received nothing for
``VUQ_HEALTH_IDLE_S`` while messages wait in its queue (the "deaf" worker a half-open broker
connection leaves). Exit 0 with a summary otherwise.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from tasks.job import redis_client, unreachable
from tasks.settings import Settings

WRITE_EVERY_S = 2.0
STALE_AFTER_WRITES = 6  # a file this many periods old: the worker stopped reporting


def health_dir(settings: Settings) -> Path:
    return Path(settings.health_dir or os.path.join(tempfile.gettempdir(), "vuq-health"))


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(vars(data)))
        tmp.replace(self.path)  # readers never see half a file


def check(settings: Settings, idle_s: float | None = None, node: str | None = None) -> tuple[bool, str]:
    """(healthy, one line) for the workers of this host (or the one named ``node``)."""
    idle_s = settings.health_idle_s if idle_s is None else idle_s
    try:
        broker = redis_client(settings.broker_url, settings.sentinel)
        broker.ping()
        waiting = int(broker.llen(settings.queue))
    except redis.RedisError as exc:
        return False, unreachable(settings.broker_url, exc)
    workers = [w for w in _activities(health_dir(settings)) if node is None or w.node == node]
    if not workers:
        return False, f"no worker reports in {health_dir(settings)}" + (f" as {node!r}" if node else "")
    now = time.time()
    for worker in workers:
        if now - worker.written > STALE_AFTER_WRITES * WRITE_EVERY_S:
            return False, f"worker {worker.node} stopped reporting {now - worker.written:.0f}s ago (hung or dead)"
        free = worker.active < worker.concurrency
        if waiting and free and now - worker.last_received > idle_s:
            return False, (f"worker {worker.node} has received nothing for {now - worker.last_received:.0f}s "
                           f"while {waiting} message(s) wait in {settings.queue!r} (a deaf broker connection?)")
    summary = ", ".join(f"{w.node} running {w.active}/{w.concurrency}" for w in workers)
    return True, f"ok: {summary}; {waiting} waiting in {settings.queue!r}"


def _activities(directory: Path) -> list[Activity]:
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            found.append(Activity(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # a file being replaced, or not ours
    return found
