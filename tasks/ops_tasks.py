"""Periodic maintenance tasks, run by ``vuq beat``."""

from __future__ import annotations

from celery import Task, shared_task

from tasks import runtime
from tasks.constants import TASK_JANITOR
from tasks.janitor import sweep
from tasks.pipeline import Step


@shared_task(bind=True, name=TASK_JANITOR, ignore_result=True)
def janitor(self: Task) -> list[str]:
    """Find active jobs with no heartbeat for too long and re-enqueue their next step."""
    pipeline = runtime.pipeline()

    def send(step: Step) -> None:
        self.app.send_task(step.task, kwargs=step.kwargs(), queue=pipeline.settings.queue)

    return sweep(pipeline.store, send, pipeline.settings.stale_after_s)
