"""The Grafana dashboard and the Prometheus alert rules read what vuq serves: a real prefork worker
with metrics on runs jobs that succeed, that are retried and that fail, a real `vuq flower` watches
them, and every metric name, label and label value the dashboard's queries and the alerts use is
checked against what their ``/metrics`` answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.constants import MIB
from tasks.job.record import State
from tests.support.ports import free_port
from tests.support.promql import legend_labels, parse, template_labels
from tests.support.scrape import Scrape, fetch, problems
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_for
from workers.lab.services import start_flower

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "vuq-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "vuq-alerts.yml"
JOB_TIMEOUT_S = 90  # a deadline only: these jobs take a second or two each on an idle machine


@dataclass
class Scrapes:
    worker: Scrape
    flower: Scrape
    both: Scrape


def _series(text: str) -> dict[str, list[dict[str, str]]]:
    return Scrape.of(text).series


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Scrapes]:
    tmp = Path(tmp_path_factory.mktemp("dashboards"))
    metrics_port, flower_port = free_port(), free_port()
    with running_stack(tmp, redis_url, workers=1, concurrency=2, VUQ_METRICS_PORT=str(metrics_port)) as stack:
        flower_env = {k: v for k, v in stack.env.items() if k != "VUQ_METRICS_PORT"}
        flower = start_flower(flower_env, stack.log_dir, flower_port)
        try:
            worker_url = f"http://127.0.0.1:{metrics_port}/metrics"
            flower_url = f"http://127.0.0.1:{flower_port}/metrics"
            wait_for(lambda: "flower_worker_online" in _series(fetch(flower_url)), 60, "Flower to see the worker")
            _run_jobs(stack)
            worker = Scrape.of(fetch(worker_url))
            flower_text = wait_for(lambda: _counted_tasks(fetch(flower_url)), 60, "Flower to count the tasks")
            yield Scrapes(worker, Scrape.of(flower_text), Scrape.of(fetch(worker_url), flower_text))
        finally:
            flower.stop()


def _counted_tasks(flower_text: str) -> str | None:
    """Flower's answer once it counted succeeded tasks and their runtimes, else None."""
    series = _series(flower_text)
    succeeded = [s for s in series.get("flower_events_total", []) if s.get("type") == "task-succeeded"]
    return flower_text if succeeded and "flower_task_runtime_seconds_bucket" in series else None


def _run_jobs(stack: Stack) -> None:
    """One job done, one retried through 5xx answers and then done, one failed (its source is gone)."""
    ok, _ = stack.file("ok.mp4", 6 * MIB, seed=1)
    assert stack.wait_final(stack.enqueue(ok, chunk_size="5MiB"), JOB_TIMEOUT_S).state == State.DONE
    retried, _ = stack.file("retried.mp4", 6 * MIB, seed=2)
    token = stack.emulator.create_upload_token()  # minted before the faults start
    stack.emulator.set_faults(seed=7, error_rate=0.6)
    try:
        job_id = stack.enqueue(retried, chunk_size="5MiB", token=token)
        wait_for(lambda: (j := stack.store.get(job_id)) is not None and j.retries >= 1, JOB_TIMEOUT_S,
                 "a retried step")
    finally:
        stack.emulator.set_faults(error_rate=0.0)
    assert stack.wait_final(job_id, JOB_TIMEOUT_S).state == State.DONE
    failed = stack.wait_final(stack.enqueue(stack.root / "gone.mp4"), JOB_TIMEOUT_S)
    assert failed.state == State.FAILED and failed.error_reason == "bad_source", failed.error


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, expr, legendFormat) of every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel["title"], target["expr"], target.get("legendFormat", ""))
            for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
            for rule in group["rules"]]


def test_the_scrape_saw_jobs_succeed_retry_and_fail(scrapes: Scrapes) -> None:
    worker = scrapes.worker.series
    assert {s["state"] for s in worker["vuq_jobs_ended_total"]} >= {"done", "failed"}
    assert {s["reason"] for s in worker["vuq_retries_total"]} >= {"server_error"}
    assert {s["state"] for s in worker["vuq_jobs"]} >= {str(s) for s in State}
    assert "vuq_active_leases" in worker and "vuq_chunk_seconds_bucket" in worker
    assert {s["worker"] for s in scrapes.flower.series["flower_worker_online"]}


def test_every_dashboard_query_reads_what_a_worker_or_flower_serves(scrapes: Scrapes) -> None:
    found = {}
    for title, expr, legend in dashboard_targets():
        query = parse(expr)
        source = scrapes.flower if all(m.startswith("flower_") for m in query.metrics) else scrapes.worker
        wrong = problems(query, source, legend_labels(legend))
        if wrong:
            found[f"{title}: {expr}"] = wrong
    assert not found, json.dumps(found, indent=1)


def test_every_alert_reads_what_a_worker_serves(scrapes: Scrapes) -> None:
    found = {}
    rules = alert_rules()
    assert rules
    for rule in rules:
        query = parse(str(rule["expr"]))
        texts = [str(v) for v in {**rule.get("labels", {}), **rule.get("annotations", {})}.values()]
        shown = set().union(*(template_labels(t) for t in texts))
        wrong = problems(query, scrapes.both, shown)
        if wrong:
            found[str(rule["alert"])] = wrong
    assert not found, json.dumps(found, indent=1)


def test_a_query_naming_what_nobody_serves_is_caught(scrapes: Scrapes) -> None:
    """The checks above can fail: a renamed metric, a label it lacks, a label value it never has."""
    assert problems(parse("sum(rate(vuq_bytes_uploaded[5m]))"), scrapes.worker) == ["no metric vuq_bytes_uploaded"]
    assert problems(parse("sum by (worker) (vuq_retries_total)"), scrapes.worker)
    assert problems(parse('vuq_jobs_ended_total{state="lost"}'), scrapes.worker)
    assert problems(parse("vuq_retries_total"), scrapes.worker, {"status"})
    assert not problems(parse('sum by (instance, reason) (vuq_retries_total{reason=~"server_error|x"})'),
                        scrapes.worker)


def test_every_metric_a_worker_serves_is_on_the_dashboard(scrapes: Scrapes) -> None:
    """A metric added to the workers (wherever it is defined) fails this until a panel charts it."""
    charted = set().union(*(parse(expr).metrics for _, expr, _ in dashboard_targets()))
    served = {name for name in scrapes.worker.series
              if name.startswith("vuq_") and not name.endswith(("_count", "_sum", "_created"))}
    assert served - charted == set(), f"served but not charted: {sorted(served - charted)}"


def test_records_missing_is_served_and_alerted_on(scrapes: Scrapes) -> None:
    """``vuq_records_missing_total`` (job records gone from the store behind an index entry): a worker serves
    it from its start, and an alert reads it."""
    alerted = set().union(*(parse(str(rule["expr"])).metrics for rule in alert_rules()))
    assert "vuq_records_missing_total" in scrapes.worker.series
    assert "vuq_records_missing_total" in alerted
