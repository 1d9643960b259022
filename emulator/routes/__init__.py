"""Route handlers: api.video operations and the ``/_emulator/`` test hooks."""
