"""Deferred and retried steps, published when they are due on Redis's clock.

A step that must wait (a retry's backoff, the fleet's api.video budget, a job another worker
holds) goes into one sorted set scored by when it is due (``JobStore.schedule``/``later``).
Every worker's main process runs a ``DelayedStepPump`` that takes the due ones (each exactly
once, whichever worker asks first) and publishes them, keeping their task id and retry count
so Flower shows one task retried. Celery's own countdowns are not used: they are judged by
the clock of whichever worker holds the message. A step taken but never published (its
worker died in between) is found by the janitor: its hand-off is noted, and nobody picks it up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

import redis
from kombu.exceptions import OperationalError

from tasks.jobstore import JobStore
from tasks.steps import Step

log = logging.getLogger(__name__)
PUMP_INTERVAL_S = 0.5
PUMP_BATCH = 100
Publish = Callable[[Step, str | None, int], None]


def publish_due(store: JobStore, publish: Publish, limit: int = PUMP_BATCH) -> int:
    """Publish the steps that are due; how many there were."""
    now, members = store.pop_due(limit)
    for member in members:
        step, task_id, retries = Step.from_member(member)
        publish(replace(step, handoff_at=now), task_id, retries)
    return len(members)


class DelayedStepPump:
    """A daemon thread publishing due steps every half second until ``stop``."""

    def __init__(self, store: Callable[[], JobStore], publish: Publish, interval_s: float = PUMP_INTERVAL_S) -> None:
        self.store, self.publish, self.interval_s = store, publish, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vuq-delayed-steps", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        store, failing = self.store(), False
        while not self._stop.wait(self.interval_s):
            try:
                while publish_due(store, self.publish) == PUMP_BATCH:
                    pass
            except (redis.RedisError, OperationalError, OSError) as exc:
                if not failing:
                    log.warning("delayed steps: cannot reach Redis (%s); trying again", type(exc).__name__)
                failing = True
                continue
            failing = False
