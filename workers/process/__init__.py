"""The Celery process: the app, its settings, kombu's Redis transport with vuq's fixes, and what a
worker runs beside its tasks (the delayed-step pump, metrics, task events, the health file, log
redaction).

Rule of this room: it imports ``tasks`` through its faces (``tasks``, ``tasks.job``, ``tasks.pipeline``
and the door modules ``settings``, ``errors``, ``redact``, ``constants``, ``runtime``), never the
console or the lab.
"""
