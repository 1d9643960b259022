"""A pipeline step to enqueue, and how people see it in Flower and the logs.

A message carries only ``job_id`` and, for chunks, the 0-based ``chunk``. What Flower
shows of it (Celery's ``kwargsrepr``) is a label a person recognises: the job id, the
chunk as ``k/n`` (1-based), the title and the source's file name, never a secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from json.encoder import encode_basestring_ascii
from typing import Any

from tasks.apivideo.accounts import DEFAULT_ACCOUNT
from tasks.constants import (
    HANDOFF_HEADER,
    MAX_PARTS,
    TASK_CHUNK,
    TASK_CLEANUP,
    TASK_FINALIZE,
    TASK_START,
    TASK_WEBHOOK,
)
from tasks.errors import BadMessage
from tasks.job.record import JobRecord, file_name
from tasks.job.spec import UploadSpec, is_job_id
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

    def kwargs_json(self) -> str:
        """``kwargs()`` as JSON, as ``json.dumps`` writes it (bulk enqueue writes thousands a second)."""
        job_id = encode_basestring_ascii(self.job_id)
        if self.chunk is None:
            return f'{{"job_id": {job_id}}}'
        return f'{{"job_id": {job_id}, "chunk": {int(self.chunk)}}}'

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
        """A delayed-set member read back; ``BadMessage`` for anything vuq did not write."""
        try:
            data = json.loads(member)
        except ValueError:
            raise BadMessage("not JSON") from None
        if not isinstance(data, dict):
            raise BadMessage("not a JSON object")
        step = checked_step(data.get("task"), data.get("job_id"), data.get("chunk"))
        label, queue, task_id, retries = (data.get(k) for k in ("label", "queue", "id", "retries"))
        if not all(v is None or isinstance(v, str) for v in (label, queue, task_id)) \
                or not (retries is None or (isinstance(retries, int) and not isinstance(retries, bool))):
            raise BadMessage("label, queue, id or retries of the wrong type")
        return replace(step, label=label, queue=queue), task_id, int(retries or 0)


Send = Callable[[Step], None]  # publishes a step (a producer, the janitor, an operator command)
# The steps vuq publishes, and whether each names a chunk.
STEP_TASKS = {TASK_START: False, TASK_CHUNK: True, TASK_FINALIZE: False, TASK_WEBHOOK: False, TASK_CLEANUP: False}
MAX_CHUNKS = MAX_PARTS  # api.video's limit of parts for one video


def checked_step(task: object, job_id: object, chunk: object = None) -> Step:
    """The step a message names, if vuq could have written it; ``BadMessage`` naming what is wrong."""
    if task not in STEP_TASKS:
        raise BadMessage(f"task: not a step of vuq's ({str(task)[:64]!r})")
    name = str(task)
    if not is_job_id(job_id):
        raise BadMessage(f"job_id: must be a job id ([A-Za-z0-9][A-Za-z0-9._:-]*, at most 128), not "
                         f"{type(job_id).__name__}")
    if STEP_TASKS[name]:
        if not isinstance(chunk, int) or isinstance(chunk, bool) or not 0 <= chunk < MAX_CHUNKS:
            raise BadMessage(f"chunk: must be a whole number 0..{MAX_CHUNKS - 1}, not {type(chunk).__name__}")
    elif chunk is not None:
        raise BadMessage(f"chunk: {name} takes no chunk")
    return Step(name, str(job_id), chunk if STEP_TASKS[name] else None)


def label(job: JobRecord, task: str, chunk: int | None = None) -> str:
    """``{'chunk': '3/12', 'title': …, 'file': …, 'account': …, 'tenant': …, 'job_id': …}``: what a person
    needs first (Flower cuts the cell at about 400 px), and still searchable as ``kwargs:<job id>``,
    ``kwargs:<account>``. The account is shown unless it is ``default``, the tenant unless it is the
    account's name (one account, one producer: nothing more to read)."""
    shown: dict[str, str] = {}
    if task == TASK_CHUNK and chunk is not None:
        shown["chunk"] = f"{chunk + 1}/{job.chunks_total or '?'}"
        if job.live:
            shown["live"] = "finished" if job.finished_at else "recording"
    elif task == TASK_START:
        shown["chunk"] = f"1/{job.chunks_total}" if job.chunks_total else "start"
    elif task == TASK_FINALIZE:
        shown["chunk"] = "metadata"
    return _label(shown, job.title, job.file_name, job.account_shown or DEFAULT_ACCOUNT, job.tenant, job.job_id)


def start_step(spec: UploadSpec) -> Step:
    """A new job's start step, labelled as ``label`` labels it, from its spec alone (bulk enqueue's path:
    no record to build)."""
    job_id = str(spec.job_id)
    shown = _label({"chunk": "start"}, spec.video.title, file_name(spec.source), spec.account or DEFAULT_ACCOUNT,
                   spec.share, job_id)
    return Step(TASK_START, job_id, None, shown)


def _label(shown: dict[str, str], title: str | None, file: str, account: str, tenant: str, job_id: str) -> str:
    if title:
        shown["title"] = _short(title)
    shown["file"] = _short(file)
    if account != DEFAULT_ACCOUNT:
        shown["account"] = account
    if tenant != account:
        shown["tenant"] = tenant
    shown["job_id"] = job_id
    return redact(repr(shown))


def callback_step(job: JobRecord) -> Step | None:
    """The webhook delivery a job that just ended owes its producer, if it asked for one."""
    return Step(TASK_WEBHOOK, job.job_id) if job.spec.callback_url else None


def step_for(job: JobRecord, task: str, chunk: int | None = None, sent: Sent | None = None) -> Step:
    """The step ``task`` of ``job``, labelled for people."""
    return Step(task, job.job_id, chunk, label(job, task, chunk), sent)


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL_TEXT else text[: MAX_LABEL_TEXT - 1] + "…"
