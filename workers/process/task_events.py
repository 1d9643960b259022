"""What the workers do with the pipeline's reports: task events for Flower, and metrics."""

from __future__ import annotations

from celery import current_task

from tasks.pipeline import NOBODY_IN_PARTICULAR, Reporter, Whose


class TaskEvents:
    """Sends ``task-progress`` events from the running task (at most one a second while a chunk
    streams, and once it is acknowledged), so Flower shows a PROGRESS state."""

    def progress(self, job_id: str, index: int, total: int, streamed: int, length: int) -> None:
        task = current_task
        if task is not None and task.request.id:
            task.send_event("task-progress", job_id=job_id, chunk=index, chunks_total=total,
                            progress=f"{index + 1}/{total}", streamed=streamed, length=length)

    def chunk_sent(self, job_id: str, index: int, total: int, size: int, seconds: float,
                   whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        task = current_task
        if task is not None and task.request.id:
            task.send_event("task-progress", job_id=job_id, chunk=index, chunks_total=total,
                            progress=f"{index + 1}/{total}")

    def state(self, job_id: str, state: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        pass

    def retry(self, job_id: str, reason: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        pass


class Fanout:
    """Passes every report on to several reporters."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def progress(self, job_id: str, index: int, total: int, streamed: int, length: int) -> None:
        for reporter in self.reporters:
            reporter.progress(job_id, index, total, streamed, length)

    def chunk_sent(self, job_id: str, index: int, total: int, size: int, seconds: float,
                   whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        for reporter in self.reporters:
            reporter.chunk_sent(job_id, index, total, size, seconds, whose)

    def state(self, job_id: str, state: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        for reporter in self.reporters:
            reporter.state(job_id, state, whose)

    def retry(self, job_id: str, reason: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        for reporter in self.reporters:
            reporter.retry(job_id, reason, whose)
