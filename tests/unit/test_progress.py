"""workers.console.progress: the bar `vuq enqueue --wait` and `vuq watch` draw from a job's record."""

from __future__ import annotations

import json

from tasks.constants import MIB
from tasks.job import JobRecord
from workers.console.progress import BAR_WIDTH, render


def job(spec: dict[str, object] | None = None, **fields: str) -> JobRecord:
    return JobRecord.from_hash({"job_id": "j1", "state": "uploading",
                                "spec": json.dumps(spec or {"source": "/videos/clip.mp4"}), **fields})


def test_a_job_at_rest_shows_its_share_of_the_size_with_the_chunk_on_its_way() -> None:
    line = render(job(size=str(20 * MIB), bytes_sent=str(5 * MIB), chunk_bytes=str(5 * MIB), next_chunk="1",
                      chunks_total="4"))
    assert line.startswith("[" + "#" * (BAR_WIDTH // 2) + "-" * (BAR_WIDTH - BAR_WIDTH // 2) + "]")
    assert " 50.0%" in line and "chunk 1/4" in line and line.endswith("uploading")


def test_a_live_job_without_a_size_shows_bytes_and_parts_and_no_percentage() -> None:
    recording = render(job({"source": "/videos/live.mp4", "live": True}, bytes_sent=str(10 * MIB), next_chunk="2"))
    assert recording.startswith("[" + "live".center(BAR_WIDTH, "~") + "]")
    assert "2 part(s)" in recording and recording.endswith("uploading, recording") and "%" not in recording
    finished = render(job({"source": "/videos/live.mp4", "live": True}, bytes_sent=str(10 * MIB), next_chunk="2",
                          finished_at="1800000000.0"))
    assert finished.endswith("uploading, finished") and "%" not in finished


def test_a_live_job_whose_size_is_known_is_drawn_like_any_other() -> None:
    line = render(job({"source": "/videos/live.mp4", "live": True}, size=str(10 * MIB), bytes_sent=str(10 * MIB),
                      next_chunk="2", chunks_total="2", state="done"))
    assert "100.0%" in line and line.endswith("done")
