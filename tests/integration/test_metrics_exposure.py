"""A worker's metrics listen where VUQ_METRICS_ADDRESS says (loopback by default), and count the records the
janitor finds missing behind an index entry (``vuq_records_missing_total``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from tasks.constants import STATE_INDEX_KEY, TASK_JANITOR
from tasks.job.record import State
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[Stack, int]]:
    port = free_port()
    with running_stack(Path(tmp_path_factory.mktemp("exposed")), redis_url, workers=1, concurrency=2,
                       VUQ_METRICS_PORT=str(port)) as stack:
        yield stack, port


def scrape(host: str, port: int) -> dict[str, float]:
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


def refused(host: str, port: int) -> bool:
    try:
        httpx.get(f"http://{host}:{port}/metrics", timeout=5)
    except httpx.ConnectError:
        return True
    return False


def test_metrics_listen_on_loopback_only_by_default(metered: tuple[Stack, int]) -> None:
    _, port = metered
    wait_for(lambda: scrape("127.0.0.1", port) or None, 20, "the metrics endpoint")
    assert refused("127.0.0.2", port)  # another loopback address: a wildcard bind would answer there


def test_metrics_listen_where_told(metered: tuple[Stack, int]) -> None:
    stack, _ = metered
    port = free_port()
    worker = stack.add_worker(concurrency=1, VUQ_METRICS_PORT=str(port), VUQ_METRICS_ADDRESS="127.0.0.2")
    try:
        wait_for(lambda: scrape("127.0.0.2", port) or None, 20, "the metrics endpoint on 127.0.0.2")
        assert refused("127.0.0.1", port)
    finally:
        worker.stop()
        stack.workers.remove(worker)


def test_a_record_missing_behind_an_index_entry_is_counted(metered: tuple[Stack, int]) -> None:
    stack, port = metered
    before = wait_for(lambda: scrape("127.0.0.1", port) or None, 20, "the metrics endpoint")
    index = STATE_INDEX_KEY.format(state=State.UPLOADING)
    stack.store.redis.zadd(index, {"lost-record": 1.0})  # what an evicting Redis leaves behind
    try:
        app = Celery("metrics-test", broker=stack.settings.broker_url, set_as_current=False)
        app.send_task(TASK_JANITOR, queue=stack.settings.queue)  # the janitor reads the active jobs
        counted = wait_for(lambda: (s := scrape("127.0.0.1", port)).get("vuq_records_missing_total", 0)
                           > before.get("vuq_records_missing_total", 0) and s, 30, "the missing record counted")
        assert counted["vuq_records_missing_total"] - before.get("vuq_records_missing_total", 0) == 1
        log = stack.logs()
        assert f"job lost-record is listed in {index} but its record is gone" in log
    finally:
        stack.store.redis.zrem(index, "lost-record")
