"""Deferred and retried steps, published when they are due on Redis's clock.

A step that must wait (a retry's backoff, the fleet's api.video budget, a job another worker
holds) goes into one sorted set scored by when it is due (``JobStore.schedule``/``later``).
Every worker's main process runs a ``DelayedStepPump`` that takes the due ones (each once,
whichever worker asks first) and publishes them, keeping their task id and retry count so
Flower shows one task retried. Celery's own countdowns are not used: they are judged by the
clock of whichever worker holds the message.

Taking is confirmed: a taken step stays in a second set until the pump says it published it.
One whose publication fails stays with the pump, which publishes it first on its next round
and gives it back to the set when the worker stops; one never confirmed (the pump died, or the
network delivered the take late and its reply was lost) is due again after
``TAKEN_STEP_TIMEOUT_S``. A step is thereby published at least once; a second copy finds its
job moved on or its lease held, and does nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

import redis

from tasks.errors import BadMessage
from tasks.job.store import JobStore
from tasks.pipeline.message import Step

log = logging.getLogger(__name__)
PUMP_INTERVAL_S = 0.5  # the longest a pump sleeps; it wakes sooner when the earliest waiting step is due sooner
PUMP_MIN_WAIT_S = 0.05  # a pump wakes at most twenty times a second, however dense the due times
PUMP_BATCH = 100
Publish = Callable[[Step, str | None, int], None]


def publish_due(store: JobStore, publish: Publish, limit: int = PUMP_BATCH,
                held: list[tuple[float, str]] | None = None, next_in: list[float | None] | None = None) -> int:
    """Publish the steps that are due; how many. ``held``: steps taken earlier whose publication
    failed, published first (no new ones are taken until they are out); what fails now stays there.
    ``next_in`` gets the seconds until the earliest step left is due (None: none, or none was taken)."""
    held = [] if held is None else held
    if not held:
        due = store.pop_due(limit)
        held.extend((due.now, member) for member in due.members)
        if next_in is not None:
            next_in.append(due.next_in)
    count = len(held)
    while held:
        now, member = held[0]
        try:
            step, task_id, retries = Step.from_member(member)
        except BadMessage as exc:  # not a step vuq wrote: set aside, never in the way of the others
            log.warning("delayed steps: a member that is not a step was set aside (%s)", exc)
            del held[0]
            store.set_aside(member)
            continue
        publish(replace(step, handoff_at=now), task_id, retries)
        del held[0]
        store.confirm(member)  # if this fails, the step is published again later: harmless
    return count


class DelayedStepPump:
    """A daemon thread publishing due steps until ``stop``: after each round it sleeps until the earliest
    waiting step is due, at most ``interval_s`` (a step added meanwhile waits at most that long past its
    time). ``outages``: what ``publish`` raises when the broker cannot be reached (besides Redis's and the
    network's errors)."""

    def __init__(self, store: Callable[[], JobStore], publish: Publish, interval_s: float = PUMP_INTERVAL_S,
                 outages: tuple[type[Exception], ...] = ()) -> None:
        self.store, self.publish, self.interval_s = store, publish, interval_s
        self.outages: tuple[type[Exception], ...] = (redis.RedisError, OSError, *outages)
        self.held: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vuq-delayed-steps", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.held and not self._thread.is_alive():
            self._give_back()

    def _run(self) -> None:
        store, failing, wait = self.store(), "", 0.0  # a first round at once
        while not self._stop.wait(wait):
            wait = self.interval_s
            next_in: list[float | None] = []
            try:
                while publish_due(store, self.publish, held=self.held, next_in=next_in) == PUMP_BATCH:
                    pass
                if next_in and next_in[-1] is not None:
                    wait = min(self.interval_s, max(PUMP_MIN_WAIT_S, next_in[-1]))
            except self.outages as exc:
                now_failing = f"{type(exc).__name__}{' (holding)' if self.held else ''}"
                if now_failing != failing:  # once per kind of trouble, not every half second
                    log.warning("delayed steps: cannot reach Redis (%s)%s; trying again", type(exc).__name__,
                                f"; {len(self.held)} step(s) taken, to be published" if self.held else "")
                failing = now_failing
                continue
            if failing:
                log.info("delayed steps: Redis answers again")
            failing = ""

    def _give_back(self) -> None:
        """Return steps taken but not published to the delayed set, due at once (best effort:
        if Redis cannot take them, the janitor finds their jobs)."""
        members = [member for _, member in self.held]
        try:
            self.store().give_back(members)
        except (redis.RedisError, OSError) as exc:
            log.warning("delayed steps: %d step(s) not published and not given back (%s); the janitor will "
                        "find their jobs", len(members), type(exc).__name__)
            return
        self.held.clear()
