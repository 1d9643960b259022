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
from collections.abc import Sequence
from functools import cache
from json.encoder import encode_basestring_ascii as _js  # a str as JSON text, as json.dumps writes it

from tasks.constants import HANDOFF_HEADER
from tasks.pipeline.message import Step

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@cache
def _hostname() -> str:
    return socket.gethostname()


def _origin() -> str:
    """Who sent the message, as Celery writes it (the pid read each time: a forked producer is itself)."""
    return f"{os.getpid()}@{_hostname()}"


@cache
def _reply_to() -> str:
    return str(uuid.uuid4())


# A version 4 UUID's variant digit (RFC 9562: 10xx) for each hex digit the random bits give.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid4(random: bytes) -> str:
    """16 random bytes as a version 4 UUID's text, as ``str(uuid.UUID(bytes=random, version=4))`` writes it."""
    h = random.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# Every header but these is the same in every start message: written once, as JSON text.
_FIXED_HEADERS = json.dumps({
    "lang": "py", "shadow": None, "eta": None, "expires": None, "group": None, "group_index": None, "retries": 0,
    "timelimit": [None, None], "parent_id": None, "argsrepr": "()", "ignore_result": None,
    "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}})[1:-1]
_EMBED_JSON = json.dumps(_EMBED)


def celery_messages(steps: Sequence[Step], queue: str, handoff_at: float | None) -> list[str]:
    """Each of ``steps`` as the JSON kombu's Redis transport keeps on ``queue``'s list, written from text
    parts (bulk enqueue writes thousands a second): what every message of the batch shares is written once,
    and the ids come from one read of the system's random source."""
    random = os.urandom(32 * len(steps))
    handoff = f", {_js(HANDOFF_HEADER)}: {json.dumps(handoff_at)}" if handoff_at is not None else ""
    tail = f', "origin": {_js(_origin())}{handoff}}}'
    properties = (f'"reply_to": "{_reply_to()}", "delivery_mode": 2, "delivery_info": {{"exchange": "", '
                  f'"routing_key": {_js(queue)}}}, "priority": 0, "body_encoding": "base64", "delivery_tag": "')
    messages = []
    for n, step in enumerate(steps):
        task_id, delivery_tag = _uuid4(random[32 * n:32 * n + 16]), _uuid4(random[32 * n + 16:32 * n + 32])
        body = f"[[], {step.kwargs_json()}, {_EMBED_JSON}]".encode()
        headers = (f'{{{_FIXED_HEADERS}, "task": {_js(step.task)}, "id": "{task_id}", "root_id": "{task_id}", '
                   f'"kwargsrepr": {_js(step.shown())}{tail}')
        messages.append(f'{{"body": "{base64.b64encode(body).decode()}", "content-encoding": "utf-8", '
                        f'"content-type": "application/json", "headers": {headers}, "properties": '
                        f'{{"correlation_id": "{task_id}", {properties}{delivery_tag}"}}}}')
    return messages

