"""The pipeline rig of the tasks/ unit tests: a worker's ``Pipeline`` over the test's job store, a fake
api.video (httpx.MockTransport) and local sources; ``build`` makes one per "worker".

Sizes: api.video's smallest chunk is 5 MiB, so the source is two chunks of 5 MiB and a last one of
1000 bytes. Every step runs under its own holder id, as each task execution does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from tasks.apivideo.client import ApiClient
from tasks.constants import LEASE_KEY, MIB, TASK_CHUNK, TASK_START, TASK_WEBHOOK
from tasks.errors import PermanentError
from tasks.job.record import JobRecord
from tasks.job.spec import UploadSpec
from tasks.job.store import Expect, JobStore
from tasks.pipeline.message import Step
from tasks.pipeline.outcomes import Ending, Fail
from tasks.pipeline.upload import Pipeline
from tasks.settings import Settings
from tests.unit.tasks.fakes import API_KEY, BASE_URL, UPLOAD_TOKEN, FakeApiVideo

CHUNK = 5 * MIB
SIZE = 2 * CHUNK + 1000
CONTENT = random.Random(7).randbytes(SIZE)
RANGES = [f"bytes 0-{CHUNK - 1}/{SIZE}", f"bytes {CHUNK}-{2 * CHUNK - 1}/{SIZE}",
          f"bytes {2 * CHUNK}-{SIZE - 1}/{SIZE}"]


class Build(Protocol):
    def __call__(self, api_key: str | None = ..., *, lease_ttl_s: int = ..., max_retries: int = ...,
                 rate_limits: dict[str, int] | None = ..., job_store: JobStore | None = ...) -> Pipeline: ...


# -- the rig -------------------------------------------------------------------------------
@pytest.fixture
def fake() -> FakeApiVideo:
    return FakeApiVideo()


@pytest.fixture
def clip(root: Path) -> Path:
    path = root / "clip.mp4"
    path.write_bytes(CONTENT)
    return path


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a local source made an HTTP request: {request.url}")


@pytest.fixture
def build(store: JobStore, fake: FakeApiVideo, root: Path) -> Iterator[Build]:
    """``build(api_key, lease_ttl_s=…, max_retries=…, rate_limits=…)``: a worker's Pipeline on the shared
    store and fake api.video (two builds are two workers, possibly configured differently); ``api_key`` is
    the ``default`` account's (None: no key)."""
    clients: list[httpx.Client] = []

    def make(api_key: str | None = API_KEY, *, lease_ttl_s: int = 5, max_retries: int = 3,
             rate_limits: dict[str, int] | None = None, job_store: JobStore | None = None) -> Pipeline:
        settings = Settings(api_base_url=BASE_URL, api_key=api_key, chunk_size=CHUNK, allowed_roots=(root,),
                            lease_ttl_s=lease_ttl_s, max_retries=max_retries, rate_limits=rate_limits or {})
        http = httpx.Client(transport=fake.transport)
        sources = httpx.Client(transport=httpx.MockTransport(_no_network))
        clients.extend([http, sources])
        return Pipeline(settings=settings, store=job_store or store, api=ApiClient(http, BASE_URL), sources=sources)

    yield make
    for client in clients:
        client.close()


def new_job(store: JobStore, source: Path, job_id: str = "j1", token: str | None = UPLOAD_TOKEN,
            **spec: object) -> str:
    assert store.create(UploadSpec(str(source), token=token, job_id=job_id, **spec)).created  # type: ignore[arg-type]
    return job_id


def fail(pipeline: Pipeline, job_id: str, holder: str, error: PermanentError, expect: Expect
         ) -> tuple[bool, Step | None]:
    """End a step of ``holder`` with ``error``: whether the failure was recorded, and the step it owes."""
    outcome = Ending(pipeline.store, pipeline.settings, pipeline.reporter).fail(job_id, holder, expect, error)
    return (True, outcome.then) if isinstance(outcome, Fail) else (False, None)


def record(store: JobStore, job_id: str = "j1") -> JobRecord:
    job = store.get(job_id)
    assert job is not None
    return job


def raw(store: JobStore, job_id: str = "j1") -> dict[str, str]:
    """The whole hash, token included: what "changes nothing" compares."""
    return {str(k): str(v) for k, v in store.redis.hgetall(f"vuq:job:{job_id}").items()}


def lapse(store: JobStore, job_id: str = "j1") -> None:
    """The lease runs out (its holder died or paused) and nobody has taken it yet."""
    store.redis.delete(LEASE_KEY.format(job_id=job_id))


def run(pipeline: Pipeline, step: Step | None, holder: str = "w") -> list[Step]:
    """Run ``step`` and every step after it, as the task adapters would; the steps run, in order."""
    ran: list[Step] = []
    while step is not None and step.task != TASK_WEBHOOK:
        ran.append(step)
        if step.task == TASK_START:
            step = pipeline.start(step.job_id, holder)
        elif step.task == TASK_CHUNK:
            assert step.chunk is not None
            step = pipeline.chunk(step.job_id, step.chunk, holder)
        else:
            step = pipeline.finalize(step.job_id, holder)
    return ran


