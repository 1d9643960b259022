"""The job: its spec, its record, and the Redis store that keeps both.

Rule of this room: it imports the base (``tasks.constants``, ``tasks.errors``, ``tasks.redact``)
and the two edges (``tasks.apivideo`` for the chunk rules, ``tasks.outbound`` for the address
policy a spec's URLs must pass), never the pipeline, the settings or Celery. Every write to a job
is one Lua script (``scripts``); JSON exists only at the store's edge.
"""

from tasks.job.connections import (
    SentinelOptions,
    broker_transport_options,
    patiently,
    redis_client,
    unreachable,
    where,
)
from tasks.job.index import PAGE_SCAN, UnknownCursor
from tasks.job.record import ACTIVE_STATES, TOKEN_FIELD, JobRecord, State, resume_command
from tasks.job.sizes import format_size, parse_size
from tasks.job.spec import PRIORITIES, UploadSpec, Video, new_job_id, parse_spec
from tasks.job.store import NOW, Created, Expect, JobStore, Written, job_store

__all__ = [
    "ACTIVE_STATES", "NOW", "PAGE_SCAN", "PRIORITIES", "TOKEN_FIELD", "Created", "Expect", "JobRecord", "JobStore",
    "SentinelOptions", "State",
    "UnknownCursor", "UploadSpec", "Video", "Written", "broker_transport_options", "format_size", "job_store",
    "new_job_id", "parse_size", "parse_spec", "patiently", "redis_client", "resume_command", "unreachable", "where",
]
