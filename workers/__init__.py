"""vuq's worker side: the Celery app, its configuration, runtime hooks and the ``vuq`` command."""

from workers.process.app import app

celery = app
__all__ = ["app", "celery"]
