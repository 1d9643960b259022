"""The lab: a whole vuq system on this machine (Redis, the emulator, workers, beat, Flower as child
processes), for ``vuq demo``, the benchmarks and the integration tests.

Rule of this room: it imports ``tasks`` through its faces and starts the Celery process as child
processes (never in its own); product code never imports it. Helpers only tests use live in
``tests/support``.
"""
