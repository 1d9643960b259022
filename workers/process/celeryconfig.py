"""Celery settings for vuq, derived from ``Settings`` (see notes on each choice in the README).

* late acks + reject on worker lost: a chunk whose worker died is delivered again;
  the job's lease and fencing check make the second delivery harmless.
* prefetch 1: a worker holds exactly the tasks it runs; a long chunk never hides
  another job's message in a busy worker's buffer.
* visibility timeout above the chunk time limit and the longest retry delay, so
  Redis never redelivers a task that is still running or waiting for its retry.
* explicit time limits, soft shutdown (requeue on SIGTERM), events for Flower.
* a lost broker connection does not cancel the chunks running: the lease and fencing make a
  copy redelivered meanwhile harmless, and the running step carries on by itself once the
  network heals (cancelling would leave every partition to the janitor).
* TCP keepalive and health checks on every Redis connection, so a connection a partition left
  half-open is noticed and replaced instead of waited on (a "deaf" worker); and kombu's Redis
  transport with acknowledgements that give the prefetch slot back even when Redis cannot take
  them (``workers.process.broker``), or a partition would leave the worker deaf after the heal.
* TLS (``rediss://``) that verifies the certificate and the host name: the options travel in the
  broker URL's query (``tasks.settings`` completes it), which kombu reads, and in
  ``broker_use_ssl`` too, which Flower's broker views read (they ignore the URL's query).
Each setting and its reason: docs/celery-settings.md.
"""

from __future__ import annotations

from typing import Any

from tasks.constants import TASK_JANITOR
from tasks.job import broker_transport_options
from tasks.settings import Settings
from workers.process import broker


def celery_config(settings: Settings) -> dict[str, Any]:
    vt = settings.visibility_timeout_s
    broker.install()
    return {
        "broker_url": settings.broker_url,
        "broker_use_ssl": settings.broker_use_ssl,  # the URL's own TLS options (None: no TLS)
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": vt, **broker_transport_options(settings.sentinel)},
        "visibility_timeout": vt,
        "result_backend": None,  # the job record is the source of truth; tasks return nothing
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.chunk_time_limit_s,
        "task_soft_time_limit": settings.chunk_soft_time_limit_s,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_soft_shutdown_timeout": 60.0,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": settings.queue,
        "task_routes": {"vuq.*": {"queue": settings.queue}},
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": True,
        "beat_schedule": {
            "vuq-janitor": {"task": TASK_JANITOR, "schedule": float(settings.janitor_interval_s),
                            "options": {"queue": settings.queue, "expires": float(settings.janitor_interval_s)}},
        },
    }
