"""Limits, sizes and timings of the emulated api.video API (docs/protocol.md)."""

MIB = 1024 * 1024

MIN_CHUNK_BYTES = 5 * MIB  # 5,242,880: smallest chunk/part except the last sequential one
MAX_RANGE_BYTES = 200 * MIB  # 209,715,200: largest byte range per request
MAX_SINGLE_UPLOAD_BYTES = 200 * MIB  # largest upload without Content-Range
MAX_TOTAL_BYTES = 52_428_800_000
MAX_TO_BYTE = MAX_TOTAL_BYTES - 1
MAX_PARTS = 10_000

DEFAULT_ACCESS_TOKEN_TTL_S = 3600
MAX_UPLOAD_TOKEN_TTL_S = 2_147_483_647

DEFAULT_PAGE_SIZE = 25
MIN_PAGE_SIZE = 1
MAX_PAGE_SIZE = 100

RATE_LIMIT_WINDOW_S = 60
# Requests per minute and per class (upload, write, read) of each `--limits` profile.
GENEROUS_UPLOAD_LIMIT_PER_MINUTE = 100_000  # the default: effectively unlimited
GENEROUS_WRITE_LIMIT_PER_MINUTE = 100_000
GENEROUS_READ_LIMIT_PER_MINUTE = 100_000
PRODUCTION_UPLOAD_LIMIT_PER_MINUTE = 100  # api.video's production environment
PRODUCTION_WRITE_LIMIT_PER_MINUTE = 200
PRODUCTION_READ_LIMIT_PER_MINUTE = 500
SANDBOX_UPLOAD_LIMIT_PER_MINUTE = 40  # api.video's sandbox environment
SANDBOX_WRITE_LIMIT_PER_MINUTE = 40
SANDBOX_READ_LIMIT_PER_MINUTE = 100

REQUEST_LOG_ENTRIES = 10_000
HOOK_PREFIX = "/_emulator/"

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ID_RANDOM_CHARS = 22

READ_BLOCK_BYTES = 1 * MIB  # sha256 and part assembly block size
