"""Free when off: a producer that imports ``tasks`` and enqueues a job loads no module of OpenTelemetry
without the extra, and none of its own with tracing off (each case in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[4]
PRODUCER = """
import json, sys
def otel():
    return sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
import redis  # redis-py >= 8 looks for the OpenTelemetry SDK by itself when it is imported
by_redis = otel()
from tasks import enqueue_upload
job_id = enqueue_upload(sys.argv[1], token="to1tcmSFHeYY5KzyhOqVKMKb", chunk_size="5MiB")
print(json.dumps({"job_id": job_id, "by_redis": by_redis, "after": otel(),
                  "vuq": sorted(m for m in sys.modules if m.startswith("tasks.telemetry"))}))
"""


def without_the_extra(tmp_path: Path) -> str:
    """A directory that, first on the path, makes ``import opentelemetry`` fail as if it were not installed."""
    blocker = tmp_path / "no-otel" / "opentelemetry"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('opentelemetry is not installed (simulated)')\n")
    return str(blocker.parent)


def produce(tmp_path: Path, redis_url: str, extra_path: str = "", **otel: str) -> tuple[dict[str, object], str]:
    source = tmp_path / "videos" / "talk.mp4"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(b"\0" * 1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VUQ_", "PYTHONPATH"))}
    env.update({"VUQ_BROKER_URL": redis_url, "VUQ_ALLOWED_ROOTS": str(source.parent), "VUQ_QUEUE": "vuq-off-test",
                "PYTHONPATH": os.pathsep.join(p for p in (extra_path, str(ROOT)) if p), **otel})
    done = subprocess.run([sys.executable, "-c", PRODUCER, str(source)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


@pytest.fixture
def redis_url(real_redis_url: str) -> str:
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    client.close()
    return real_redis_url


def traceparent(redis_url: str, job_id: object) -> object:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return client.hget(f"vuq:job:{job_id}", "traceparent")
    finally:
        client.close()


def test_without_the_extra_no_module_of_opentelemetry_is_loaded(tmp_path: Path, redis_url: str) -> None:
    seen, _ = produce(tmp_path, redis_url, without_the_extra(tmp_path))
    assert seen["after"] == [] and seen["vuq"] == ["tasks.telemetry", "tasks.telemetry.context",
                                                   "tasks.telemetry.spans", "tasks.telemetry.switch"]
    assert traceparent(redis_url, seen["job_id"]) is None


def test_without_the_extra_otel_variables_leave_tracing_off_with_one_warning(tmp_path: Path, redis_url: str) -> None:
    seen, stderr = produce(tmp_path, redis_url, without_the_extra(tmp_path), OTEL_TRACES_EXPORTER="otlp",
                           OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert seen["after"] == [] and "tasks.telemetry.otel" not in seen["vuq"]
    assert stderr.count("vuq[otel] is not installed") == 1, stderr
    assert traceparent(redis_url, seen["job_id"]) is None


def test_with_the_extra_and_tracing_off_vuq_loads_nothing_of_opentelemetry(tmp_path: Path, redis_url: str) -> None:
    seen, _ = produce(tmp_path, redis_url, OTEL_SERVICE_NAME="uploads")  # a name alone sends nothing
    # redis-py's own probe may have loaded the metrics SDK; vuq adds no module to it, traces none
    assert seen["after"] == seen["by_redis"] and "tasks.telemetry.otel" not in seen["vuq"]
    assert not [m for m in seen["after"] if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter"))]  # type: ignore[union-attr]
    assert traceparent(redis_url, seen["job_id"]) is None


def test_with_the_extra_and_tracing_on_the_producer_records_the_trace(tmp_path: Path, redis_url: str) -> None:
    seen, _ = produce(tmp_path, redis_url, OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                      OTEL_BSP_EXPORT_TIMEOUT="100")
    assert "tasks.telemetry.otel" in seen["vuq"]  # type: ignore[operator]
    assert str(traceparent(redis_url, seen["job_id"])).startswith("00-")


WORKER = """
import json, sys
def otel():
    return sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
import redis
by_redis = otel()
from celery import signals
from workers.process import app  # the worker's Celery app: every task, every signal handler
signals.worker_process_init.send(sender=None)  # what a pool child runs after the fork: tracing set up if on
from tasks import runtime
runtime.pipeline()  # the clients a step uses
print(json.dumps({"by_redis": by_redis, "after": otel(),
                  "vuq": sorted(m for m in sys.modules if m.startswith("tasks.telemetry"))}))
"""


@pytest.mark.parametrize("extra", [False, True], ids=["without the extra", "tracing off"])
def test_a_worker_process_loads_nothing_of_opentelemetry_when_off(tmp_path: Path, redis_url: str,
                                                                 extra: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VUQ_", "PYTHONPATH"))}
    paths = [] if extra else [without_the_extra(tmp_path)]
    env.update({"VUQ_BROKER_URL": redis_url, "VUQ_API_BASE_URL": "http://127.0.0.1:9", "VUQ_API_KEY": "k",
                "PYTHONPATH": os.pathsep.join([*paths, str(ROOT)])})
    done = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["after"] == seen["by_redis"] and "tasks.telemetry.otel" not in seen["vuq"]
    if not extra:
        assert seen["after"] == []
