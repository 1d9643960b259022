"""Completion webhooks, as a receiver sees them: ``verify(body, secret, header)`` tells a genuine, fresh
delivery from an altered, unsigned or replayed one (README, "Completion webhook"). The webhook itself,
its signature and its delivery live in ``tasks.pipeline.callbacks``."""

from tasks.pipeline.callbacks import (
    DEFAULT_TOLERANCE_S,
    EVENT_HEADER,
    JOB_HEADER,
    SIGNATURE_HEADER,
    deliver,
    payload,
    sign,
    verify,
)

__all__ = ["DEFAULT_TOLERANCE_S", "EVENT_HEADER", "JOB_HEADER", "SIGNATURE_HEADER", "deliver", "payload", "sign",
           "verify"]
