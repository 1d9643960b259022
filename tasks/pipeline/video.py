"""The job's video at api.video, made first (with an API key) so that no crash makes a second one, and
tagged so that only the job that made it ever adopts or deletes it.

Its metadata carries the job id and a nonce the job drew at its start and keeps in its record: a job id
used again (after its record expired, or by two deployments on one account) never finds, adopts or
deletes another job's video, since the nonce differs.
"""

from __future__ import annotations

from tasks.apivideo.account import AccountApi
from tasks.constants import JOB_METADATA_KEY, JOB_NONCE_METADATA_KEY
from tasks.job.record import JobRecord
from tasks.job.spec import Video


def tags(job: JobRecord) -> dict[str, str]:
    """The metadata that finds the job's video again (a record from before nonces: the id alone)."""
    return {JOB_METADATA_KEY: job.job_id, **({JOB_NONCE_METADATA_KEY: job.nonce} if job.nonce else {})}


def tagged(job: JobRecord) -> Video:
    """The job's metadata to patch, with its tags (api.video replaces the whole metadata list)."""
    video = job.spec.video
    for key, value in tags(job).items():
        video = video.tagged(key, value)
    return video


def container(job: JobRecord) -> dict[str, object]:
    """The empty video a job creates first: its title (or one naming the job) and its tags."""
    return {"title": job.spec.video.title or f"vuq job {job.job_id}",
            "metadata": [{"key": k, "value": v} for k, v in tags(job).items()]}


def find(api: AccountApi, job: JobRecord) -> str | None:
    """The video this job made, if api.video holds one with its tags (every tag must match)."""
    wanted = tags(job)
    for video in api.find_videos(wanted):
        held = {pair.get("key"): pair.get("value") for pair in video.get("metadata") or []}
        if all(held.get(k) == v for k, v in wanted.items()):
            return str(video["videoId"])
    return None
