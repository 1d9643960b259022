"""Names, sizes and timings of the pipeline, in one place, with their units in their names."""

from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB

# api.video's chunk rules (docs/protocol.md, "Chunk rules"); the official clients cap chunks at 128 MiB.
MIN_CHUNK_BYTES: Final = 5 * MIB
MAX_CHUNK_BYTES: Final = 128 * MIB
DEFAULT_CHUNK_BYTES: Final = 50 * MIB
MAX_PARTS: Final = 10_000  # a live upload's numbered parts
# How much of a source is read at a time while streaming it into a request body.
STREAM_BLOCK_BYTES: Final = 1 * MIB

# The public contract: other services enqueue by these names (README "Contract").
SPEC_VERSION: Final = 1
TASK_START: Final = "vuq.upload.start"
TASK_CHUNK: Final = "vuq.upload.chunk"
TASK_FINALIZE: Final = "vuq.upload.finalize"
TASK_FINISH: Final = "vuq.upload.finish"  # a live job's end: kwargs job_id, optional size
TASK_JANITOR: Final = "vuq.janitor.sweep"
TASK_WEBHOOK: Final = "vuq.webhook.deliver"
DEFAULT_QUEUE: Final = "uploads"

TASK_CLEANUP: Final = "vuq.job.cleanup"

# Redis keys. The job record is the source of truth; messages only trigger work.
KEY_PREFIX: Final = "vuq:"
JOB_KEY: Final = KEY_PREFIX + "job:{job_id}"
JOB_INDEX_KEY: Final = KEY_PREFIX + "jobs"  # sorted set: every job id -> creation time
STATE_INDEX_KEY: Final = KEY_PREFIX + "state:{state}"  # sorted set per state: job id -> creation time
EXPIRY_KEY: Final = KEY_PREFIX + "expiry"  # sorted set: ended job id -> when its record expires
OUTBOX_KEY: Final = KEY_PREFIX + "outbox"  # sorted set: job id -> when its completion webhook is due
DELAYED_KEY: Final = KEY_PREFIX + "delayed"  # sorted set: deferred step (JSON) -> when to publish it
TAKEN_KEY: Final = KEY_PREFIX + "delayed:taken"  # sorted set: step taken by a pump -> when, until published
UNREADABLE_KEY: Final = KEY_PREFIX + "delayed:unreadable"  # sorted set: a member no pump can read, set aside
REVOKE_KEY: Final = KEY_PREFIX + "revoke"  # sorted set: ended job id -> since when its minted token awaits deletion
REVOKE_TOKEN_KEY: Final = KEY_PREFIX + "revoke:{job_id}"  # hash: that token and its account, until deleted
LIVE_WAITING_KEY: Final = KEY_PREFIX + "live:waiting"  # sorted set: live job id -> since when it waits for bytes
REJECTED_KEY: Final = KEY_PREFIX + "rejected:{message_id}"  # a spec refused for an id already in use
LEASE_KEY: Final = KEY_PREFIX + "lease:{job_id}"
TOKEN_OWNER_KEY: Final = KEY_PREFIX + "token-key:{token_id}"  # the id of the key whose account holds a token
# A delayed step taken (TAKEN_KEY) and not confirmed published this long is due again.
TAKEN_STEP_TIMEOUT_S: Final = 30

# Retention of ended jobs (VUQ_JOB_RETENTION_S, VUQ_FAILED_JOB_RETENTION_S); 0 keeps forever.
DEFAULT_JOB_RETENTION_S: Final = 7 * 24 * 3600
DEFAULT_FAILED_JOB_RETENTION_S: Final = 30 * 24 * 3600
# Message header carrying the hand-off time (Redis's clock) of every step vuq publishes.
HANDOFF_HEADER: Final = "vuq_handoff_at"
ACCESS_TOKEN_KEY: Final = KEY_PREFIX + "auth:{key_id}"
ACCESS_TOKEN_LOCK_KEY: Final = KEY_PREFIX + "auth-lock:{key_id}"

# api.video access tokens live 3600 s; refresh them this long before they expire.
ACCESS_TOKEN_REFRESH_MARGIN_S: Final = 120
ACCESS_TOKEN_LOCK_TTL_S: Final = 30
ACCESS_TOKEN_WAIT_S: Final = 10

# What a failed job needs before a resume can succeed (its record's error_needs): a new upload token.
NEEDS_TOKEN: Final = "token"

# Metadata key that tags the container a job creates, so a crashed start finds it again.
JOB_METADATA_KEY: Final = "vuq-job-id"
# ...and a nonce the job drew at its start: a job id used again never finds another job's video.
JOB_NONCE_METADATA_KEY: Final = "vuq-job-nonce"

# Spec limits (bad input is refused at enqueue with the field named).
MAX_TITLE_CHARS: Final = 256
MAX_DESCRIPTION_CHARS: Final = 5000
MAX_TAGS: Final = 50
MAX_TAG_CHARS: Final = 256
MAX_METADATA_PAIRS: Final = 50
MAX_METADATA_CHARS: Final = 256
MAX_JOB_ID_CHARS: Final = 128
