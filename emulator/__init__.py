"""A local api.video-compatible HTTP server for development, tests, demos and benchmarks.

Start it with ``python -m emulator --data-dir DIR --api-key KEY`` (see
:mod:`emulator.cli` and ``emulator/README.md``). It speaks the wire format of
``docs/protocol.md`` and adds fault injection and test hooks under
``/_emulator/`` (not part of api.video).
"""
