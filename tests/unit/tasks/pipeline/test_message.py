"""tasks.pipeline.message: the step to enqueue, its label for Flower (job id, chunk as 'k/n', title, file name;
never a secret; long text cut) and its delayed-set member form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tasks.constants import TASK_CHUNK, TASK_FINALIZE, TASK_START
from tasks.errors import BadMessage
from tasks.job.record import JobRecord, State
from tasks.job.spec import UploadSpec, Video
from tasks.pipeline.intake import checked_finish
from tasks.pipeline.message import MAX_LABEL_TEXT, Sent, Step, label, step_for

TOKEN = "to1a2B3c4D5e6F7g8H9i0JkL"


def job(source: str = "/videos/clip.mp4", title: str | None = "Holiday", chunks_total: int | None = 12,
        **spec: Any) -> JobRecord:
    return JobRecord("job-42", State.UPLOADING, UploadSpec(source, video=Video(title=title), **spec),
                     chunks_total=chunks_total)


def shown(text: str) -> dict[str, str]:
    """A label is a dict repr; read it back."""
    return dict(json.loads(text.replace("'", '"')))


def test_a_chunk_label_has_the_job_the_chunk_as_k_of_n_the_title_and_the_file() -> None:
    assert shown(label(job(), TASK_CHUNK, 2)) == {"job_id": "job-42", "chunk": "3/12", "title": "Holiday",
                                                  "file": "clip.mp4"}


@pytest.mark.parametrize(("task", "chunk", "total", "expected"), [
    (TASK_CHUNK, 0, 12, "1/12"),
    (TASK_CHUNK, 11, 12, "12/12"),
    (TASK_CHUNK, 4, None, "5/?"),
    (TASK_START, None, 12, "1/12"),
    (TASK_START, None, None, "start"),
    (TASK_FINALIZE, None, 12, "metadata"),
])
def test_the_chunk_shown_for_each_task(task: str, chunk: int | None, total: int | None, expected: str) -> None:
    assert shown(label(job(chunks_total=total), task, chunk))["chunk"] == expected


def test_a_label_names_the_account_unless_default_and_the_tenant_unless_the_accounts() -> None:
    assert shown(label(job(account="acme", tenant="live"), TASK_CHUNK, 2))["account"] == "acme"
    assert shown(label(job(account="acme", tenant="live"), TASK_CHUNK, 2))["tenant"] == "live"
    assert "tenant" not in shown(label(job(account="acme"), TASK_CHUNK, 2))
    assert shown(label(job(tenant="backfill"), TASK_CHUNK, 2))["tenant"] == "backfill"
    assert set(shown(label(job(), TASK_CHUNK, 2))) == {"job_id", "chunk", "title", "file"}


def test_a_label_is_searchable_by_job_id() -> None:
    assert "'job_id': 'job-42'" in label(job(), TASK_CHUNK, 0)


def test_no_title_no_title_key() -> None:
    assert "title" not in shown(label(job(title=None), TASK_FINALIZE))


def test_the_file_name_of_a_url_source_has_no_query_or_user_info() -> None:
    text = label(job(source="https://u:pw@bucket.example/media/clip.mp4?X-Amz-Signature=abc&token=def"), TASK_START)
    assert shown(text)["file"] == "clip.mp4"
    assert "abc" not in text and "def" not in text and "pw" not in text


@pytest.mark.parametrize("title", [f"token={TOKEN}", f"my upload {TOKEN}", "see https://h/x?sig=topsecret"])
def test_a_secret_in_a_title_is_masked(title: str) -> None:
    text = label(job(title=title), TASK_CHUNK, 0)
    assert TOKEN not in text and "topsecret" not in text
    assert "***" in text


def test_long_titles_and_file_names_are_cut() -> None:
    long_title, long_name = "T" * 200, "n" * 200 + ".mp4"
    fields = shown(label(job(source=f"/videos/{long_name}", title=long_title), TASK_CHUNK, 0))
    assert len(fields["title"]) == MAX_LABEL_TEXT and fields["title"].endswith("…")
    assert len(fields["file"]) == MAX_LABEL_TEXT and fields["file"].startswith("nnn")
    assert shown(label(job(title="T" * MAX_LABEL_TEXT), TASK_CHUNK, 0))["title"] == "T" * MAX_LABEL_TEXT


def test_step_for_labels_the_step() -> None:
    sent = Sent(1, 12, 100, 0.5)
    step = step_for(job(), TASK_CHUNK, 2, sent)
    assert (step.task, step.job_id, step.chunk, step.sent) == (TASK_CHUNK, "job-42", 2, sent)
    assert step.label == label(job(), TASK_CHUNK, 2)
    assert step.shown() == step.label


def test_kwargs_carry_only_the_job_and_the_chunk() -> None:
    assert Step(TASK_CHUNK, "j", 3).kwargs() == {"job_id": "j", "chunk": 3}
    assert Step(TASK_FINALIZE, "j").kwargs() == {"job_id": "j"}
    assert Step(TASK_START, "j").shown() == "{'job_id': 'j'}"  # without a label: the bare kwargs


@pytest.mark.parametrize("step", [Step(TASK_CHUNK, "j1", 4, "{'job_id': 'j1', 'chunk': '5/9'}"),
                                  Step(TASK_START, "j2"), Step(TASK_FINALIZE, "j3", None, "lbl")])
def test_a_member_round_trips(step: Step) -> None:
    assert Step.from_member(step.to_member("task-id-1", 3)) == (step, "task-id-1", 3)
    assert Step.from_member(step.to_member()) == (step, None, 0)


def test_members_are_unique_per_deferral_and_leave_out_what_is_per_run() -> None:
    step = Step(TASK_CHUNK, "j1", 4, "lbl", sent=Sent(3, 9, 10, 1.0), handoff_at=12.5)
    assert step.to_member("a", 1) != step.to_member("b", 1) != step.to_member("a", 2)
    data = json.loads(step.to_member("a", 1))
    assert "sent" not in data and "handoff_at" not in data


def test_a_live_chunk_label_says_whether_its_job_still_records() -> None:
    recording = JobRecord("job-7", State.UPLOADING, UploadSpec("/v/live.mp4", live=True))
    assert shown(label(recording, TASK_CHUNK, 2))["chunk"] == "3/?"
    assert shown(label(recording, TASK_CHUNK, 2))["live"] == "recording"
    finished = JobRecord("job-7", State.UPLOADING, UploadSpec("/v/live.mp4", live=True), chunks_total=4,
                         finished_at=1.0)
    assert shown(label(finished, TASK_CHUNK, 3)) | {"job_id": ""} == {"chunk": "4/4", "live": "finished",
                                                                         "file": "live.mp4", "job_id": ""}


@pytest.mark.parametrize(("args", "kwargs", "words"), [
    ((), {"job_id": "j 1"}, "job_id: must be a job id"),
    ((), {"job_id": "j1", "size": "12"}, "size: must be a whole number"),
    ((), {"job_id": "j1", "size": 0}, "size: must be a whole number"),
    ((), {"job_id": "j1", "size": True}, "size: must be a whole number"),
    ((), {"job_id": "j1", "token": "x"}, "token: not an argument of vuq.upload.finish"),
    (("j1",), {}, "positional arguments"),
])
def test_a_finish_message_vuq_could_not_have_written_is_refused(args: tuple[Any, ...], kwargs: dict[str, Any],
                                                                words: str) -> None:
    with pytest.raises(BadMessage, match=words):
        checked_finish(args, kwargs)
    assert checked_finish((), {"job_id": "j1", "size": 12}) == ("j1", 12)
    assert checked_finish((), {"job_id": "j1"}) == ("j1", None)
