"""After a job ended: delete the token vuq minted for it, and the partial video of a cancelled job.

Both need the job's account key; both are owed until done (a minted token in the job store's revoke set,
a video by the record's ``cleanup: deleting``), so a worker that dies meanwhile leaves them to the
janitor, which sends ``vuq.job.cleanup`` again.
"""

from __future__ import annotations

import logging

from tasks.apivideo.keyring import Keyring
from tasks.apivideo.limiter import Turn
from tasks.errors import ApiRejected, RetryableError, Throttled
from tasks.job.record import JobRecord, State
from tasks.job.store import JobStore
from tasks.pipeline import minted, video
from tasks.pipeline.job_account import account_of
from tasks.telemetry import joined

log = logging.getLogger(__name__)
CLEANUP_WAIT_S = 2.0  # a cancelled job's chunk is still on its way: ask again this much later


def clean_up(store: JobStore, keyring: Keyring, job_id: str) -> float | None:
    """Do what the ended job ``job_id`` still owes; None when nothing more is owed, else the seconds to
    wait before trying again."""
    job = store.get(job_id)
    joined(job)  # the step's span, a child of the job's root
    if not minted.revoke(store, keyring, job_id):
        return CLEANUP_WAIT_S * 5
    if job is None or job.state != State.CANCELLED or job.cleanup != "deleting":
        return None
    if store.lease_holder(job_id):  # a chunk is still on its way; its cursor write will be refused
        return CLEANUP_WAIT_S
    try:
        outcome = _delete_video(keyring, job)
    except (RetryableError, Throttled) as exc:
        log.info("job %s: cleanup deferred: %s", job_id, exc)
        return getattr(exc, "wait_s", 0) or CLEANUP_WAIT_S * 5
    except ApiRejected as exc:
        outcome = f"video kept: api.video refused the deletion ({exc})"
    store.update(job_id, None, {"cleanup": outcome}, expect={"state": [State.CANCELLED]})
    log.info("job %s: cancelled; %s", job_id, outcome)
    return None


def _delete_video(keyring: Keyring, job: JobRecord) -> str:
    if job.token_only:
        return "video kept: the workers hold no API key of the job's account"
    account = account_of(keyring, job, None)
    api = account.with_key(Turn(job.tenant))
    video_id = job.video_id or (video.find(api, job) if job.nonce else None)  # asked for, never recorded
    if not video_id:
        return "no video was created"
    api.delete_video(video_id)
    return f"video {video_id} deleted"
