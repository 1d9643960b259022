"""tasks.job.record: reading a job hash, and its public form (no secret: URLs keep scheme, host and path;
the title and file shown; a resume hint only where a resume can help)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tasks.job.record import NEEDS_TOKEN, TOKEN_FIELD, JobRecord, State
from tasks.redact import MASK

TOKEN = "to1a2B3c4D5e6F7g8H9i0JkL"


def job(spec: dict[str, Any] | None = None, **fields: str) -> JobRecord:
    data = {"job_id": "j1", "state": "uploading", "spec": json.dumps(spec or {"source": "/videos/clip.mp4"}),
            **fields}
    return JobRecord.from_hash(data)


def test_from_hash_reads_types_and_defaults() -> None:
    record = JobRecord.from_hash({"job_id": "j", "state": "uploading", "spec": '{"source": "/v"}', "size": "10",
                                  "next_chunk": "2", "error_retryable": "1", "error": "", "heartbeat_at": "5.5",
                                  TOKEN_FIELD: "secret"})
    assert record.state is State.UPLOADING
    assert (record.size, record.next_chunk, record.bytes_sent, record.retries) == (10, 2, 0, 0)
    assert record.error is None and record.chunks_total is None and record.wake_at is None
    assert record.heartbeat_at == 5.5
    assert record.public()["error_retryable"] is None  # only meaningful next to an error
    assert record.public()["source"] == "/v"


def test_flags_are_read_from_their_one_and_zero() -> None:
    record = job(token_minted="1", container_pending="1", verify_upload="0")
    assert (record.token_minted, record.container_pending, record.verify_upload) == (True, True, False)


def test_state_properties() -> None:
    assert State.QUEUED.active and State.FINALIZING.active and not State.DONE.active
    assert State.DONE.final and State.FAILED.final and State.CANCELLED.final
    assert not State.UPLOADING.final


def test_the_public_form_never_holds_the_token() -> None:
    record = JobRecord.from_hash({"job_id": "j1", "state": "uploading", TOKEN_FIELD: TOKEN,
                                  "spec": json.dumps({"source": "/v.mp4"})})
    assert TOKEN not in json.dumps(record.public())
    assert "token" not in record.public()


def test_the_public_form_masks_the_source_url() -> None:
    shown = job({"source": "https://user:pw@bucket.example/media/clip.mp4?X-Amz-Signature=abc"}).public()
    assert shown["source"] == f"https://{MASK}@bucket.example/media/clip.mp4?{MASK}"
    assert shown["file"] == "clip.mp4"
    assert "abc" not in json.dumps(shown) and "pw" not in json.dumps(shown)


def test_the_public_form_masks_the_callback_url() -> None:
    shown = job({"source": "/v.mp4", "callback_url": "https://hooks:s3cret@hooks.example/in?sig=zz"}).public()
    assert shown["callback_url"] == f"https://{MASK}@hooks.example/in?{MASK}"
    assert "s3cret" not in json.dumps(shown) and "zz" not in json.dumps(shown)
    assert job().public()["callback_url"] is None


def test_the_public_form_shows_title_and_file() -> None:
    shown = job({"source": "/videos/2024/holiday.mp4", "video": {"title": "Holiday"}}).public()
    assert (shown["title"], shown["file"]) == ("Holiday", "holiday.mp4")
    untitled = job({"source": ""}).public()
    assert (untitled["title"], untitled["file"], untitled["source"]) == (None, "-", None)


@pytest.mark.parametrize(("source", "name"), [
    ("/videos/clip.mp4", "clip.mp4"),
    ("https://h/media/clip.mp4?sig=x&token=y", "clip.mp4"),
    ("https://h/media/dir/", "dir"),
    ("file:///videos/clip.mp4", "clip.mp4"),
])
def test_the_file_name_never_has_a_query(source: str, name: str) -> None:
    assert job({"source": source}).file_name == name


def test_progress_is_a_share_of_the_size() -> None:
    assert job(size="200", bytes_sent="50").progress == 0.25
    assert job(bytes_sent="50").progress == 0.0
    assert job(size="10", bytes_sent="20").progress == 1.0


@pytest.mark.parametrize(("fields", "hint"), [
    ({"state": "failed", "error": "x", "error_retryable": "1"}, "vuq resume j1"),
    ({"state": "failed", "error": "x", "error_retryable": "1", "error_needs": NEEDS_TOKEN},
     "vuq resume j1 --token-file FILE (a new upload token)"),
    ({"state": "failed", "error": "x", "error_retryable": "0"}, None),
    ({"state": "failed", "error": "x", "error_retryable": "0", "error_needs": NEEDS_TOKEN}, None),
    ({"state": "uploading", "error_retryable": "1"}, None),
    ({"state": "done"}, None),
    ({"state": "cancelled", "error_retryable": "1"}, None),
])
def test_a_resume_hint_only_where_a_resume_can_help(fields: dict[str, str], hint: str | None) -> None:
    record = JobRecord.from_hash({"job_id": "j1", "spec": "{}", **fields})
    assert record.resume_hint() == hint
    assert record.public()["resume"] == hint


def test_the_public_error_fields() -> None:
    shown = job(state="failed", error="api.video answered 400: bad", error_retryable="0").public()
    assert (shown["state"], shown["error"], shown["error_retryable"]) == ("failed", "api.video answered 400: bad",
                                                                          False)


def test_the_trace_id_is_the_traceparents_and_none_untraced() -> None:
    traced = job(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert traced.public()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert job().public()["trace_id"] is None
    assert job(traceparent="garbled").public()["trace_id"] is None
