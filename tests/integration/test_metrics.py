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


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels`` (whatever else they carry)."""
    return sum(value for key, value in samples.items()
               if (key == name or key.startswith(name + "{")) and all(f"{k}={v}" in key for k, v in labels.items()))


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
    mine = {"account": "default", "tenant": "default"}  # the account and tenant the jobs ran as
    assert total(after, "vuq_bytes_uploaded_total", **mine) - total(before, "vuq_bytes_uploaded_total", **mine) \
        == total_bytes
    assert total(after, "vuq_chunk_seconds_count", account="default") - total(before, "vuq_chunk_seconds_count") == 5
    assert total(after, "vuq_jobs_ended_total", state="done", **mine) \
        - total(before, "vuq_jobs_ended_total", state="done") == 2
    assert after["vuq_jobs{state=done}"] >= 2
    assert "vuq_active_leases" in after
