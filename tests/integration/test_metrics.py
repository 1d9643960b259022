"""Prometheus metrics from a prefork worker, scraped after an upload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasks.constants import MIB
from tasks.job.record import State
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[Stack, int]]:
    port = free_port()
    with running_stack(Path(tmp_path_factory.mktemp("metered")), redis_url, workers=1, concurrency=2,
                       VUQ_METRICS_PORT=str(port)) as stack:
        yield stack, port


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            key = sample.name + (f"{{{labels}}}" if labels else "")
            if "le" not in sample.labels:
                samples[key] = sample.value
    return samples


def test_worker_metrics_count_the_upload_across_pool_processes(metered: tuple[Stack, int]) -> None:
    stack, port = metered
    before = wait_for(lambda: scrape(port) or None, 20, "the metrics endpoint")
    sizes = [(11 * MIB, 3), (6 * MIB, 2)]
    jobs = [stack.enqueue(stack.file(f"m{i}.bin", size, seed=60 + i)[0], chunk_size="5MiB")
            for i, (size, _) in enumerate(sizes)]
    for job_id in jobs:
        assert stack.wait_final(job_id).state == State.DONE
    after = scrape(port)
    total_bytes = sum(size for size, _ in sizes)
    assert after["vuq_bytes_uploaded_total"] - before.get("vuq_bytes_uploaded_total", 0) == total_bytes
    assert after["vuq_chunk_seconds_count"] - before.get("vuq_chunk_seconds_count", 0) == 5
    assert after["vuq_jobs_ended_total{state=done}"] - before.get("vuq_jobs_ended_total{state=done}", 0) == 2
    assert after["vuq_jobs{state=done}"] >= 2
    assert "vuq_active_leases" in after
