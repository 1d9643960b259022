"""vuq's upload pipeline: tasks, planning, the api.video client, sources and the job store.

Producers use ``enqueue_upload`` (and ``resume_upload``); other services send
``vuq.upload.start`` by name.
"""

from tasks.errors import EnqueueError, SpecError
from tasks.producer import enqueue_upload, resume_upload

__all__ = ["EnqueueError", "SpecError", "enqueue_upload", "resume_upload"]
