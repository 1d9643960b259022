"""The api.video edge: the HTTP client, access tokens, the fleet's limiter, the chunk rules.

Rule of this room: it imports only the base (``tasks.constants``, ``tasks.errors``,
``tasks.redact``), httpx and redis. httpx exceptions and api.video's error answers become vuq's
errors here, at the boundary; nothing above it sees a status code it has to interpret.
"""

from tasks.apivideo.access_tokens import AccessTokens
from tasks.apivideo.account import AccountApi
from tasks.apivideo.chunking import ChunkPlan, plan_chunks
from tasks.apivideo.client import READ, UPLOAD, WRITE, ApiClient
from tasks.apivideo.limiter import CLASSES, FleetLimiter, parse_rate_limits

__all__ = ["CLASSES", "READ", "UPLOAD", "WRITE", "AccessTokens", "AccountApi", "ApiClient", "ChunkPlan", "FleetLimiter",
           "parse_rate_limits", "plan_chunks"]
