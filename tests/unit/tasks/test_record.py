"""tasks.record: reading a job hash and its public form."""

from __future__ import annotations

from tasks.record import TOKEN_FIELD, JobRecord, State


def test_from_hash_reads_types_and_defaults() -> None:
    job = JobRecord.from_hash({"job_id": "j", "state": "uploading", "spec": '{"source": "/v"}', "size": "10",
                               "next_chunk": "2", "error_retryable": "1", "error": "", "heartbeat_at": "5.5",
                               TOKEN_FIELD: "secret"})
    assert job.state is State.UPLOADING
    assert (job.size, job.next_chunk, job.bytes_sent, job.retries) == (10, 2, 0, 0)
    assert job.error is None and job.chunks_total is None and job.wake_at is None
    assert job.heartbeat_at == 5.5
    assert job.has_token
    assert job.public()["error_retryable"] is None  # only meaningful next to an error
    assert job.public()["source"] == "/v"


def test_state_properties() -> None:
    assert State.QUEUED.active and State.FINALIZING.active and not State.DONE.active
    assert State.DONE.final and State.FAILED.final and State.CANCELLED.final
    assert not State.UPLOADING.final
