"""The ``vuq`` command line: enqueue and follow jobs, operate them, start the processes.

Rule of this room: it imports ``tasks`` through its faces and may import the Celery process
(``workers.process``: the health check) and, for ``vuq demo`` alone, the lab; nothing imports it
but its own entry points (``vuq``, ``python -m workers.console``).
"""
