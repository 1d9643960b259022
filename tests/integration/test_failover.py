"""Redis high availability with Sentinel: a primary, a replica and three sentinels (all redis-server
processes on 127.0.0.1, with passwords); the workers, beat and the producer find the primary through
the sentinels. The primary is SIGKILLed mid-run: every job finishes byte-exact, nothing is lost, and
no job gets a second video."""

from __future__ import annotations

from pathlib import Path

from tasks.constants import MIB
from tasks.job.record import State
from tests.support.checks import chunks_in_order, videos_of
from tests.support.sentinel import start_sentinel_cluster
from tests.support.stack import running_stack
from tests.support.waiting import wait_for

PASSWORD = "failover-secret-31"


def test_jobs_finish_byte_exact_through_a_failover(tmp_path: Path, redis_url: str) -> None:
    with start_sentinel_cluster(tmp_path / "sentinel", "vuq-primary", password=PASSWORD) as group, \
            running_stack(tmp_path / "stack", group.sentinel_url, workers=2, concurrency=2,
                          emulator_args=("--latency-ms", "200,200"), VUQ_LEASE_TTL_S="5", VUQ_STALE_AFTER_S="10",
                          VUQ_JANITOR_INTERVAL_S="2", VUQ_MAX_RETRIES="30", **group.vuq_env()) as stack:
        stack.add_beat()
        files = [stack.file(f"ha-{i}.mp4", (16 + 4 * i) * MIB, seed=60 + i) for i in range(6)]
        ids = [stack.enqueue(path, chunk_size="5MiB") for path, _ in files]
        wait_for(lambda: sum(j.next_chunk for j in stack.store.records(ids)) >= 6, 120, "the jobs under way")
        old = group.master_address()
        group.kill_primary()
        new = group.wait_for_failover(30)
        records = [stack.wait_final(job_id, 240) for job_id in ids]
        videos = stack.emulator.videos()
        chunks = {v["videoId"]: stack.emulator.video(v["videoId"])["chunks"] for v in videos}
        logs = stack.logs()
    assert new != old
    assert [r.state for r in records] == [State.DONE] * len(ids), [(r.job_id, r.state, r.error) for r in records]
    for record, (_, digest) in zip(records, files, strict=True):
        mine = videos_of(videos, record.job_id)
        assert len(mine) == 1 and mine[0]["sha256"] == digest, (record.job_id, len(mine))
        assert chunks_in_order(chunks[mine[0]["videoId"]])
        assert record.error is None and "internal error" not in logs
    assert PASSWORD not in logs
