"""A step as the Celery message a worker receives, written without Celery: for bulk enqueue, where
thousands of start messages go onto the broker's queue in the same Redis round trips as their records.

The format is Celery's task protocol 2 (headers, body ``[args, kwargs, embed]``) inside kombu's Redis
transport envelope (JSON with a base64 body, pushed on the left of the queue's list), as Celery's own
``send_task`` writes it with vuq's producer settings (JSON serializer, default exchange, priority 0).
``tests/unit/tasks/pipeline/test_wire.py`` holds it against a message Celery itself wrote.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from functools import cache
from typing import Any

from tasks.constants import HANDOFF_HEADER
from tasks.pipeline.message import Step

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@cache
def _origin() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


@cache
def _reply_to() -> str:
    return str(uuid.uuid4())


def _two_random_halves() -> tuple[bytes, bytes]:
    random = os.urandom(32)
    return random[:16], random[16:]


def celery_message(step: Step, queue: str, handoff_at: float | None) -> str:
    """``step`` as the JSON kombu's Redis transport keeps on ``queue``'s list."""
    task_id, delivery_tag = (str(uuid.UUID(bytes=b, version=4)) for b in _two_random_halves())
    body = json.dumps([[], step.kwargs(), _EMBED]).encode()
    headers: dict[str, Any] = {
        "lang": "py", "task": step.task, "id": task_id, "shadow": None, "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
        "parent_id": None, "argsrepr": "()", "kwargsrepr": step.shown(), "origin": _origin(),
        "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    if handoff_at is not None:
        headers[HANDOFF_HEADER] = handoff_at
    properties = {"correlation_id": task_id, "reply_to": _reply_to(), "delivery_mode": 2,
                  "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
                  "body_encoding": "base64", "delivery_tag": delivery_tag}
    return json.dumps({"body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
                       "content-type": "application/json", "headers": headers, "properties": properties})
