"""The Celery application: ``celery -A workers worker`` and ``vuq worker`` both load this.

Importing it reads no environment and connects nowhere: the configuration is a promise
that ``Settings.from_env()`` fulfils the first time Celery looks at it (a producer that
only imports ``tasks`` never triggers it).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from celery.app.amqp import AMQP
from celery.worker import state as worker_state
from kombu.exceptions import OperationalError

from tasks import runtime, telemetry
from tasks.job import job_store
from tasks.pipeline import DelayedStepPump, Step
from tasks.redact import mask_secrets
from tasks.settings import get_settings
from workers.process import metrics
from workers.process.celeryconfig import celery_config
from workers.process.health import ActivityWriter, startup_refusal
from workers.process.logs import install_redaction
from workers.process.metrics import prepare_multiprocess_dir
from workers.process.task_events import Fanout, TaskEvents

log = logging.getLogger(__name__)
REFUSED_STATUS = 2  # as `vuq` ends on configuration: the deployment must change, a restart will not help


class MaskingAMQP(AMQP):
    """Every message this app publishes (ours, retry(), Flower's async-apply) shows its
    arguments with secrets masked in logs, task-sent events and Flower."""

    def as_task_v2(self, task_id: str, name: str, args: Any = None, kwargs: Any = None,
                   *rest: Any, **options: Any) -> Any:
        if kwargs and options.get("kwargsrepr") is None:
            options["kwargsrepr"] = repr(mask_secrets(dict(kwargs)))
        if args and options.get("argsrepr") is None:
            options["argsrepr"] = repr(mask_secrets(list(args)))
        return super().as_task_v2(task_id, name, args, kwargs, *rest, **options)


def create_app() -> Celery:
    app = Celery("vuq", amqp=MaskingAMQP, include=["tasks.uploads", "tasks.upkeep"])
    app.add_defaults(lambda: celery_config(get_settings()))  # read when Celery first needs it
    return app


app = create_app()


def _refuse_to_start(role: str, refusal: str | None) -> None:
    """End a worker or beat that must not run, in one line (exit status 2)."""
    if refusal:
        log.critical("vuq %s refuses to start: %s", role, refusal)
        raise SystemExit(REFUSED_STATUS)


@signals.worker_init.connect
def _worker_starts(**_: Any) -> None:
    """Main worker process: its Redis never evicts and was verified, its health directory is its own;
    then metrics (if VUQ_METRICS_PORT is set) and what the pipeline reports to."""
    settings = get_settings()
    _refuse_to_start("worker", startup_refusal(settings, health_files=True))
    runtime.ssl_context()  # made once here, before the pool forks: every child inherits it
    # The chain's own chunk messages need no task-sent event (Flower shows them once received);
    # it would be one more publish between two chunks. Producers and Flower keep sending them.
    app.conf.task_send_sent_event = False
    reporters: list[Any] = [TaskEvents()]
    if settings.metrics_port:
        prepare_multiprocess_dir()
        metrics.serve(settings)
        reporters.append(metrics.metrics())
        metrics.count_missing_records()
    runtime.set_reporter(Fanout(*reporters))


@signals.beat_init.connect
def _beat_starts(**_: Any) -> None:
    """Beat: its Redis never evicts and was verified (the janitor it schedules relies on both)."""
    _refuse_to_start("beat", startup_refusal(get_settings()))


_pump: DelayedStepPump | None = None
_activity: ActivityWriter | None = None


@signals.worker_ready.connect
def _start_pump(sender: Any = None, **_: Any) -> None:
    """Main worker process: publish deferred and retried steps when Redis's clock says they are due,
    and note what this worker does for `vuq health`."""
    global _pump, _activity
    settings = get_settings()
    concurrency = int(getattr(getattr(sender, "controller", None), "concurrency", 0) or 1)
    _activity = ActivityWriter(settings, str(getattr(sender, "hostname", "worker")), concurrency,
                               lambda: len(worker_state.active_requests))
    _activity.start()

    def publish(step: Step, task_id: str | None, retries: int) -> None:
        app.send_task(step.task, queue=step.queue or settings.queue, task_id=task_id, retries=retries,
                      **step.message())

    _pump = DelayedStepPump(lambda: job_store(settings), publish, outages=(OperationalError,))
    _pump.start()


@signals.task_received.connect
def _received(**_: Any) -> None:
    if _activity is not None:
        _activity.received()


@signals.worker_shutting_down.connect
def _stop_pump(**_: Any) -> None:
    if _pump is not None:
        _pump.stop()


@signals.worker_shutdown.connect
def _stop_reporting(**_: Any) -> None:
    """Once shutdown is over: during a warm shutdown the worker still finishes its chunks, and
    `vuq health` should not call it dead."""
    if _activity is not None:
        _activity.stop()


@signals.worker_process_init.connect
def _fresh_clients(**_: Any) -> None:
    """A forked pool child builds its own Redis and HTTP clients, and its own tracing (OTEL_*, if on)."""
    runtime.reset()
    telemetry.setup(get_settings().secrets())


@signals.worker_process_shutdown.connect
def _child_exits(pid: int | None = None, **_: Any) -> None:
    telemetry.shutdown()  # what its spans buffered goes out before the child exits
    if get_settings().metrics_port and pid:
        metrics.process_died(pid)


@signals.worker_ready.connect
def _trace_in_process(sender: Any = None, **_: Any) -> None:
    """A threads or solo pool runs its tasks in this process: tracing is set up here (prefork: in each
    child, after the fork; the main process runs no step and sets up nothing)."""
    pool = getattr(getattr(sender, "controller", None), "pool_cls", None)
    if "prefork" not in str(getattr(pool, "__module__", pool)):
        telemetry.setup(get_settings().secrets())


@signals.worker_shutdown.connect
def _stop_tracing(**_: Any) -> None:
    telemetry.shutdown()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(logger: Any = None, **_: Any) -> None:
    settings = get_settings()
    install_redaction(settings.secrets(), logger, settings.log_format)
