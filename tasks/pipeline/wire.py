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


# Every header but these is the same in every start message: written once, as JSON text.
_FIXED_HEADERS = json.dumps({
    "lang": "py", "shadow": None, "eta": None, "expires": None, "group": None, "group_index": None, "retries": 0,
    "timelimit": [None, None], "parent_id": None, "argsrepr": "()", "ignore_result": None,
    "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}})[1:-1]
_EMBED_JSON = json.dumps(_EMBED)


def celery_message(step: Step, queue: str, handoff_at: float | None) -> str:
    """``step`` as the JSON kombu's Redis transport keeps on ``queue``'s list (written from text parts:
    bulk enqueue writes thousands a second)."""
    task_id, delivery_tag = (str(uuid.UUID(bytes=b, version=4)) for b in _two_random_halves())
    body = f"[[], {json.dumps(step.kwargs())}, {_EMBED_JSON}]".encode()
    handoff = f", {json.dumps(HANDOFF_HEADER)}: {json.dumps(handoff_at)}" if handoff_at is not None else ""
    headers = (f'{{{_FIXED_HEADERS}, "task": {json.dumps(step.task)}, "id": "{task_id}", "root_id": "{task_id}", '
               f'"kwargsrepr": {json.dumps(step.shown())}, "origin": {json.dumps(_origin())}{handoff}}}')
    properties = (f'{{"correlation_id": "{task_id}", "reply_to": "{_reply_to()}", "delivery_mode": 2, '
                  f'"delivery_info": {{"exchange": "", "routing_key": {json.dumps(queue)}}}, "priority": 0, '
                  f'"body_encoding": "base64", "delivery_tag": "{delivery_tag}"}}')
    return (f'{{"body": "{base64.b64encode(body).decode()}", "content-encoding": "utf-8", '
            f'"content-type": "application/json", "headers": {headers}, "properties": {properties}}}')
