"""A pipeline step to enqueue, and how people see it in Flower and the logs.

A message carries only ``job_id`` and, for chunks, the 0-based ``chunk``. What Flower
shows of it (Celery's ``kwargsrepr``) is a label a person recognises: the job id, the
chunk as ``k/n`` (1-based), the title and the source's file name, never a secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.apivideo.accounts import DEFAULT_ACCOUNT
from tasks.constants import HANDOFF_HEADER, TASK_CHUNK, TASK_FINALIZE, TASK_START, TASK_WEBHOOK
from tasks.job.record import JobRecord
from tasks.pipeline.reports import NOBODY_IN_PARTICULAR, Whose
from tasks.redact import redact

MAX_LABEL_TEXT = 60


@dataclass(frozen=True)
class Sent:
    """A chunk api.video acknowledged: reported once the next step is enqueued."""

    index: int
    total: int
    size: int
    seconds: float
    whose: Whose = NOBODY_IN_PARTICULAR


@dataclass(frozen=True)
class Step:
    """The next task to enqueue for a job."""

    task: str
    job_id: str
    chunk: int | None = None
    label: str | None = None  # what Flower shows for its arguments (see ``label``)
    sent: Sent | None = None
    handoff_at: float | None = None  # Redis's time the record noted the hand-off (carried in the message)
    queue: str | None = None  # where a deferred step is published again (None: the publisher's queue)

    def kwargs(self) -> dict[str, Any]:
        return {"job_id": self.job_id} if self.chunk is None else {"job_id": self.job_id, "chunk": self.chunk}

    def shown(self) -> str:
        """The kwargs repr for Flower and logs: the label, or the bare kwargs."""
        return self.label or repr(self.kwargs())

    def message(self) -> dict[str, Any]:
        """What its Celery message carries (``send_task`` options): the ids, the label Flower shows,
        and the hand-off time the janitor reads."""
        headers = {HANDOFF_HEADER: self.handoff_at} if self.handoff_at is not None else {}
        return {"kwargs": self.kwargs(), "kwargsrepr": self.shown(), "headers": headers}

    def to_member(self, task_id: str | None = None, retries: int = 0) -> str:
        """This step as a delayed-set member (JSON, unique per deferral)."""
        return json.dumps({"job_id": self.job_id, "task": self.task, "chunk": self.chunk, "label": self.label,
                           "queue": self.queue, "id": task_id, "retries": retries}, sort_keys=True)

    @classmethod
    def from_member(cls, member: str) -> tuple[Step, str | None, int]:
        data = json.loads(member)
        step = cls(data["task"], data["job_id"], data.get("chunk"), data.get("label"), queue=data.get("queue"))
        return step, data.get("id"), int(data.get("retries") or 0)


Send = Callable[[Step], None]  # publishes a step (a producer, the janitor, an operator command)


def label(job: JobRecord, task: str, chunk: int | None = None) -> str:
    """``{'chunk': '3/12', 'title': …, 'file': …, 'account': …, 'tenant': …, 'job_id': …}``: what a person
    needs first (Flower cuts the cell at about 400 px), and still searchable as ``kwargs:<job id>``,
    ``kwargs:<account>``. The account is shown unless it is ``default``, the tenant unless it is the
    account's name (one account, one producer: nothing more to read)."""
    shown: dict[str, str] = {}
    if task == TASK_CHUNK and chunk is not None:
        shown["chunk"] = f"{chunk + 1}/{job.chunks_total or '?'}"
    elif task == TASK_START:
        shown["chunk"] = f"1/{job.chunks_total}" if job.chunks_total else "start"
    elif task == TASK_FINALIZE:
        shown["chunk"] = "metadata"
    if job.title:
        shown["title"] = _short(job.title)
    shown["file"] = _short(job.file_name)
    account = job.account_shown or DEFAULT_ACCOUNT
    if account != DEFAULT_ACCOUNT:
        shown["account"] = account
    if job.spec.share != account:
        shown["tenant"] = job.spec.share
    shown["job_id"] = job.job_id
    return redact(repr(shown))


def callback_step(job: JobRecord) -> Step | None:
    """The webhook delivery a job that just ended owes its producer, if it asked for one."""
    return Step(TASK_WEBHOOK, job.job_id) if job.spec.callback_url else None


def step_for(job: JobRecord, task: str, chunk: int | None = None, sent: Sent | None = None) -> Step:
    """The step ``task`` of ``job``, labelled for people."""
    return Step(task, job.job_id, chunk, label(job, task, chunk), sent)


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL_TEXT else text[: MAX_LABEL_TEXT - 1] + "…"
