"""Capturing the Celery task events Flower sees, from a real broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery


@contextmanager
def capturing_events(broker_url: str) -> Iterator[list[dict[str, Any]]]:
    """Collect every task/worker event published while the block runs."""
    app = Celery("event-capture", broker=broker_url, set_as_current=False)
    events: list[dict[str, Any]] = []
    connected = threading.Event()
    receivers: list[Any] = []

    def run() -> None:
        with app.connection() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": events.append})
            ready = receiver.on_consume_ready

            def on_ready(*args: Any, **kwargs: Any) -> None:
                ready(*args, **kwargs)
                connected.set()

            receiver.on_consume_ready = on_ready
            receivers.append(receiver)
            receiver.capture(limit=None, timeout=None, wakeup=False)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not connected.wait(10):
        raise AssertionError("could not subscribe to task events")
    try:
        yield events
    finally:
        for receiver in receivers:
            receiver.should_stop = True
        thread.join(5)
