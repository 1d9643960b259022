"""Free TCP ports on 127.0.0.1 for processes a test starts."""

from workers.lab.supervise import free_port

__all__ = ["free_port"]
