"""Prometheus metrics from the workers, correct under the prefork pool.

Counters and histograms use prometheus_client's multiprocess mode: each pool child
writes its own files in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh private directory
unless set), and the worker's main process serves their sum on ``VUQ_METRICS_PORT``,
bound to ``VUQ_METRICS_ADDRESS`` (loopback unless a scraper elsewhere needs it).
Jobs by state and active leases are read from Redis at scrape time, so they are
right whichever process moved a job. ``vuq_records_missing_total`` counts index
entries found with no record behind them (the job store's hook, ``count_missing_records``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from tasks.job import ACTIVE_STATES, JobStore, State, job_store
from tasks.pipeline import NOBODY_IN_PARTICULAR, Whose
from tasks.settings import Settings

log = logging.getLogger(__name__)
CHUNK_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_metrics: Metrics | None = None


def prepare_multiprocess_dir() -> str:
    """Set (and empty) the multiprocess directory, before any metric is created.

    Celery's command line imports prometheus_client early (through Flower's plugin), when
    the variable was not set yet, so the value class is chosen again here."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="vuq-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    else:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    return directory


class Metrics:
    """The pipeline's own metrics; one instance per process, fed through the Reporter hooks."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        who = ["account", "tenant"]
        self.bytes_uploaded = Counter("vuq_bytes_uploaded", "Bytes acknowledged by api.video", who)
        self.chunks = Counter("vuq_chunks_uploaded", "Chunks acknowledged by api.video", who)
        self.chunk_seconds = Histogram("vuq_chunk_seconds", "Time to send one chunk and get its answer",
                                       ["account"], buckets=CHUNK_SECONDS_BUCKETS)
        self.retries = Counter("vuq_retries", "Retried steps by reason", ["reason", "account"])
        self.jobs_ended = Counter("vuq_jobs_ended", "Jobs that reached a final state", ["state", *who])
        self.records_missing = Counter("vuq_records_missing", "Job ids an index lists with no record behind "
                                       "them (a Redis that lost keys)")

    def progress(self, job_id: str, index: int, total: int, streamed: int, length: int) -> None:
        pass

    def chunk_sent(self, job_id: str, index: int, total: int, size: int, seconds: float,
                   whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        self.bytes_uploaded.labels(account=whose.account, tenant=whose.tenant).inc(size)
        self.chunks.labels(account=whose.account, tenant=whose.tenant).inc()
        self.chunk_seconds.labels(account=whose.account).observe(seconds)

    def state(self, job_id: str, state: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        if State(state).final:
            self.jobs_ended.labels(state=str(state), account=whose.account, tenant=whose.tenant).inc()

    def retry(self, job_id: str, reason: str, whose: Whose = NOBODY_IN_PARTICULAR) -> None:
        self.retries.labels(reason=reason, account=whose.account).inc()

    def record_missing(self, job_id: str, index: str) -> None:
        self.records_missing.inc()


class RedisStateCollector:
    """``vuq_jobs{state}``, ``vuq_active_leases``, ``vuq_live_waiting`` and ``vuq_delayed_unreadable``, read
    from the job store when
    scraped: counts by state, and the leases of the active jobs only (never the history)."""

    def __init__(self, settings: Settings) -> None:
        self.store = job_store(settings)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            jobs = GaugeMetricFamily("vuq_jobs", "Jobs by state (from the job store)", labels=["state"])
            for state, count in self.store.counts().items():
                jobs.add_metric([state], count)
            active = [job_id for state in ACTIVE_STATES for job_id in self.store.ids_in(state)]
            leases = sum(self.store.leases(active))
            unreadable = self.store.unreadable_steps()
            live_waiting = self.store.live_waiting_count()
        except Exception as exc:  # a scrape must not crash the worker
            log.warning("metrics: cannot read the job store: %s", type(exc).__name__)
            return
        yield jobs
        yield GaugeMetricFamily("vuq_active_leases", "Jobs a worker holds right now", value=leases)
        yield GaugeMetricFamily("vuq_live_waiting", "Live jobs waiting for their files to grow", value=live_waiting)
        yield GaugeMetricFamily("vuq_delayed_unreadable", "Deferred-step members no pump could read, set aside "
                                "(not written by vuq)", value=unreadable)


def metrics() -> Metrics:
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def count_missing_records() -> None:
    """Count every record the job store finds missing behind an index entry, in this process and the
    pool children it forks."""
    JobStore.on_missing_record(metrics().record_missing)


def serve(settings: Settings) -> None:
    """Serve the summed multiprocess metrics plus the Redis-derived gauges (main process) on
    ``VUQ_METRICS_ADDRESS``:``VUQ_METRICS_PORT``."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(RedisStateCollector(settings))
    assert settings.metrics_port is not None
    start_http_server(settings.metrics_port, addr=settings.metrics_address, registry=registry)
    shown = f"[{settings.metrics_address}]" if ":" in settings.metrics_address else settings.metrics_address
    log.info("metrics on http://%s:%d/metrics", shown, settings.metrics_port)


def process_died(pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
