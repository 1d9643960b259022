"""The emulator's one error module: api.video problem bodies and the exception that carries them.

Every error answer is built by :func:`error_body`, from a slug and a title
taken from the named constants below (the exact wording of api.video's
DOCS error pages; see docs/protocol.md).

    ApiError                 raised anywhere in a handler; rendered by the app
    error_body(...)          the only place an error JSON object is assembled
"""

from __future__ import annotations

from typing import Any

DOCS_REFERENCE_URL = "https://docs.api.video/reference/"

# (slug, title) pairs. Status codes are chosen where the error is raised.
AUTH_INVALID_USER_CREDENTIALS = (
    "authentication-invalid-user-credentials",
    "The user credentials were incorrect.",
)
AUTH_INVALID_API_KEY = ("authentication-invalid-api-key", "The API key is invalid.")
AUTH_INVALID_ACCESS_TOKEN = (
    "authentication-invalid-access-token",
    "The access token is invalid or expired.",
)
AUTH_INVALID_REFRESH_TOKEN = (
    "authentication-invalid-refresh-token",
    "The refresh token is invalid.",
)
AUTH_INVALID_HEADER = (
    "authentication-invalid-authorization-header-value",
    'The "Authorization" header value is invalid.',
)
AUTH_MISSING_HEADER = (
    "authentication-missing-authorization-header",
    'The "Authorization" header is missing.',
)
AUTH_MISSING_UPLOAD_TOKEN = ("authentication-missing-upload-token", "The upload token is missing.")
AUTH_INVALID_UPLOAD_TOKEN = (
    "authentication-invalid-upload-token",
    "The upload token is invalid or expired.",
)
INVALID_PAYLOAD = ("invalid-payload", "The payload is invalid.")
INVALID_ATTRIBUTE = ("invalid-attribute", "An attribute is invalid.")
ATTRIBUTE_REQUIRED = ("attribute-required", "This attribute is required.")
OUT_OF_RANGE = ("invalid-query-parameter", "This parameter is out of the allowed range of values.")
RESOURCE_NOT_FOUND = ("resource-not-found", "The requested resource was not found.")
UNRECOGNIZED_URL = ("unrecognized-request-url", "Unrecognized request URL.")
METHOD_NOT_ALLOWED = ("method-not-allowed", "Method is not allowed for this route.")
TOO_MANY_REQUESTS = ("too-many-requests", "Too many requests.")
SERVER_ERROR = ("server-error", "Server error")
SERVICE_UNAVAILABLE = ("service-unavailable", "Service unavailable.")

RANGE_MALFORMED = (
    "video-content-range-malformed",
    'The value of the "Content-Range" header is malformed, the expected format is '
    '"bytes <from_byte>-<to_byte>/<total_bytes>" or "part <part>/<total_parts>".',
)
RANGE_STARTED_WITH_PART = (
    "video-content-range-started-with-part",
    'This "Content-Range" upload has been started with "part", '
    'you cannot continue it with "bytes".',
)
RANGE_STARTED_WITH_BYTES = (
    "video-content-range-started-with-bytes",
    'This "Content-Range" upload has been started with "bytes", '
    'you cannot continue it with "part"',
)
RANGE_ALREADY_INITIATED = (
    "video-content-range-already-initiated",
    'This video source has already been initiated with a "Content-Range" upload.',
)
BYTES_DIFFERENT_TOTAL = (
    "video-content-range-by-bytes-different-total-bytes",
    'The "total_bytes" value in the "Content-Range" header must be the same than the one '
    "you already set for this video.",
)
BYTES_FROM_TOO_HIGH = (
    "video-content-range-by-bytes-from-byte-too-high",
    'The "from_byte" value in the "Content-Range" header is higher than the "to_byte" value.',
)
BYTES_RANGE_MISMATCH = (
    "video-content-range-by-bytes-range-mismatch",
    "The size of the file you sent is different than the range length you set in the "
    '"Content-Range" header.',
)
BYTES_RANGE_OVERLAP = (
    "video-content-range-by-bytes-range-overlap",
    'The range in the "Content-Range" header overlaps with a previous one you already sent '
    "for this video.",
)
BYTES_RANGE_TOO_SMALL = (
    "video-content-range-by-bytes-range-too-small",
    'The range in the "Content-Range" header is too small.',
)
BYTES_RANGE_TOO_LARGE = (
    "video-content-range-by-bytes-range-too-large",
    'The range in the "Content-Range" header is too large.',
)
BYTES_TO_TOO_HIGH_ALLOWED = (
    "video-content-range-by-bytes-to-byte-too-high-allowed",
    'The "to_byte" value in the "Content-Range" header is higher than the maximum upper bound '
    "allowed for a video.",
)
BYTES_TO_TOO_HIGH_TOTAL = (
    "video-content-range-by-bytes-to-byte-too-high-total",
    'The "to_byte" value in the "Content-Range" header is higher than the "total_bytes" value '
    "you set for this video.",
)
BYTES_TOTAL_TOO_HIGH = (
    "video-content-range-by-bytes-total-bytes-too-high",
    'The "total_bytes" value in the "Content-Range" header is higher than the maximum allowed '
    "limit.",
)
BYTES_TOTAL_TOO_LOW = (
    "video-content-range-by-bytes-total-bytes-too-low",
    'The "total_bytes" value in the "Content-Range" header is lower than or equal to the upper '
    "bound of a range you already sent for this video.",
)
BYTES_TOTAL_ZERO = (
    "video-content-range-by-bytes-total-bytes-zero",
    'The "total_bytes" value in the "Content-Range" header must be greater than 0.',
)
PART_DIFFERENT_TOTAL = (
    "video-content-range-by-part-different-total-parts",
    'The "total_parts" value in the "Content-Range" header must be the same than the one you '
    "already set for this video.",
)
PART_ALREADY_SENT = (
    "video-content-range-by-part-part-already-sent",
    'The "part" value in the "Content-Range" header collides with a previous one you already '
    "sent for this video.",
)
PART_TOO_HIGH_ALLOWED = (
    "video-content-range-by-part-part-too-high-allowed",
    'The "part" value in the "Content-Range" header is higher than the maximum number of parts '
    "allowed for a video.",
)
PART_TOO_HIGH_TOTAL = (
    "video-content-range-by-part-part-too-high-total",
    'The "part" value in the "Content-Range" header is higher than the "total_parts" value you '
    "set for this video.",
)
PART_ZERO = (
    "video-content-range-by-part-part-zero",
    'The "part" value in the "Content-Range" header must be greater than 0.',
)
PART_TOTAL_TOO_HIGH = (
    "video-content-range-by-part-total-parts-too-high",
    'The "total_parts" value in the "Content-Range" header is higher than the maximum number '
    "of parts allowed for a video.",
)
PART_TOTAL_TOO_LOW = (
    "video-content-range-by-part-total-parts-too-low",
    'The "total_parts" value in the "Content-Range" header is lower than or equal to a part '
    "number you already sent for this video.",
)
PART_TOTAL_ZERO = (
    "video-content-range-by-part-total-parts-zero",
    'The "total_parts" value in the "Content-Range" header must be greater than 0.',
)
PART_FILE_TOO_SMALL = (
    "video-content-range-by-part-uploaded-file-too-small",
    "The uploaded file is too small.",
)
FILE_EMPTY = ("uploaded-file-empty", "The uploaded file is empty.")
FILE_INVALID = ("uploaded-file-invalid-file", "The uploaded file is invalid.")
FILE_MULTIPLE = ("uploaded-file-multiple-files", "There is more than one uploaded file in the request.")
FILE_NONE = ("uploaded-file-no-file", "There is no uploaded file in the request.")
FILE_TOO_LARGE = ("uploaded-file-too-large", "The uploaded file is too large.")
SOURCE_ALREADY_UPLOADED = (
    "video-source-already-uploaded",
    "The source of the video is already uploaded.",
)

Slug = tuple[str, str]


def error_body(
    error: Slug,
    status: int,
    name: str | None = None,
    detail: str | None = None,
    problems: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build an api.video problem body: ``type``, ``title``, ``name``, ``status`` (+ optional)."""
    slug, title = error
    body: dict[str, Any] = {"type": DOCS_REFERENCE_URL + slug, "title": title}
    if name is not None:
        body["name"] = name
    body["status"] = status
    if detail is not None:
        body["detail"] = detail
    if extra:
        body.update(extra)
    if problems is not None:
        body["problems"] = problems
    return body


class ApiError(Exception):
    """An api.video error answer, raised from a handler and rendered by the app."""

    def __init__(
        self,
        error: Slug,
        status: int,
        name: str | None = None,
        detail: str | None = None,
        extra: dict[str, Any] | None = None,
        with_problems: bool = False,
    ) -> None:
        super().__init__(error[0])
        self.error = error
        self.status = status
        self.name = name
        self.detail = detail
        self.extra = extra
        self.with_problems = with_problems

    @property
    def slug(self) -> str:
        """The DOCS slug of this error."""
        return self.error[0]

    def body(self) -> dict[str, Any]:
        """The JSON body of this error (built by :func:`error_body`)."""
        problems = None
        if self.with_problems:
            slug, title = self.error
            problem = {"type": DOCS_REFERENCE_URL + slug, "title": title, "name": self.name or ""}
            problems = [problem]
        return error_body(self.error, self.status, self.name, self.detail, problems, self.extra)
