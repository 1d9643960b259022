"""Every VUQ_* environment variable, read in this one place and validated with clear errors.

``Settings.from_env()`` is called once per process (``get_settings``); tests build
``Settings(...)`` directly. No secret has a default, and ``repr`` never shows one.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from tasks.apivideo.accounts import DEFAULT_ACCOUNT, AccountConfig, parse_accounts_file
from tasks.apivideo.limiter import parse_rate_limits
from tasks.constants import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_FAILED_JOB_RETENTION_S,
    DEFAULT_JOB_RETENTION_S,
    DEFAULT_QUEUE,
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
)
from tasks.errors import ConfigError
from tasks.job.connections import (
    TLS_FILES,
    TLS_PREFIX,
    SentinelOptions,
    cert_reqs_name,
    is_false,
    is_sentinel,
    tls_options,
    url_password,
    url_query,
    uses_tls,
    verifies_tls,
    with_password,
    with_query,
)
from tasks.job.sizes import parse_size
from tasks.outbound.address_policy import IPNetwork, NetPolicy, parse_allowed_nets
from tasks.outbound.sources import SourceLimits

T = TypeVar("T")
log = logging.getLogger(__name__)
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_API_BASE_URL = "http://127.0.0.1:8765"
DEFAULT_BEAT_SCHEDULE = "~/.local/state/vuq/celerybeat-schedule"
LOG_FORMATS = ("text", "json")
DEFAULT_METRICS_ADDRESS = "127.0.0.1"  # metrics say what is uploaded; bind wider only for a scraper
URL_VARIABLES = (("broker_url", "VUQ_BROKER_URL"), ("redis_url", "VUQ_REDIS_URL"))
PASSWORD_VARIABLES = "VUQ_REDIS_PASSWORD (or VUQ_REDIS_PASSWORD_FILE)"
# The TLS files a setting may give, by the URL query parameter redis-py and kombu read them from.
TLS_FILE_VARIABLES = dict(zip(TLS_FILES, ("VUQ_REDIS_TLS_CA_FILE", "VUQ_REDIS_TLS_CERT_FILE",
                                          "VUQ_REDIS_TLS_KEY_FILE"), strict=True))
_warned_unverified: list[bool] = []  # not empty once this process said that TLS verification is off


@dataclass(frozen=True)
class Settings:
    """The validated configuration of a producer, worker, beat or Flower process."""

    broker_url: str = field(default=DEFAULT_BROKER_URL, repr=False)  # may hold a Redis password
    redis_url: str = field(default=DEFAULT_BROKER_URL, repr=False)
    api_base_url: str = DEFAULT_API_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    queue: str = DEFAULT_QUEUE
    chunk_size: int = DEFAULT_CHUNK_BYTES
    allowed_roots: tuple[Path, ...] = ()
    max_retries: int = 8
    retry_backoff_s: float = 2.0
    retry_backoff_max_s: float = 120.0
    http_connect_timeout_s: float = 10.0
    http_io_timeout_s: float = 120.0
    chunk_time_limit_s: int = 1800
    visibility_timeout_s: int = 3600
    lease_ttl_s: int = 60
    stale_after_s: int = 90
    janitor_interval_s: int = 20
    webhook_secret: str | None = field(default=None, repr=False)
    metrics_port: int | None = None
    flower_basic_auth: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one object per line, with the job, chunk, trace and span ids
    rate_limits: dict[str, int] = field(default_factory=dict)  # per class; a missing class is learned
    beat_schedule: str = DEFAULT_BEAT_SCHEDULE  # beat's state file, kept out of the working directory
    job_retention_s: int = DEFAULT_JOB_RETENTION_S  # done and cancelled jobs; 0 keeps forever
    failed_job_retention_s: int = DEFAULT_FAILED_JOB_RETENTION_S  # failed jobs (resumable); 0 keeps forever
    allowed_private_nets: tuple[IPNetwork, ...] = ()  # sources and callbacks there are allowed
    sentinel_master: str | None = None  # with sentinel:// URLs: the monitored primary's name
    sentinel_password: str | None = field(default=None, repr=False)  # the sentinels' own password, if any
    health_dir: str = ""  # where workers note their activity for `vuq health` ("": the temp dir)
    health_idle_s: int = 120  # `vuq health` fails a worker idle this long while its queue waits
    live_idle_timeout_s: int = 3600  # a live job whose file neither grows nor is finished this long fails
    accounts: tuple[AccountConfig, ...] = ()  # VUQ_ACCOUNTS_FILE's accounts, besides `default` (VUQ_API_KEY)
    tenant_weights: dict[str, int] = field(default_factory=dict)  # a tenant's share of a budget that binds
    # What a worker accepts from a source (docs/security.md); 0 turns a limit off.
    max_source_bytes: int = SourceLimits.max_bytes  # api.video's 30 GiB (32212254720 bytes)
    source_chunk_deadline_s: float = SourceLimits.chunk_deadline_s  # one chunk's waiting on its source, in all
    source_min_bytes_per_s: int = SourceLimits.min_bytes_per_s  # the slowest pace over any window
    source_window_s: float = SourceLimits.window_s  # that window; also the longest one read may wait
    redis_password: str | None = field(default=None, repr=False)  # the broker's and the store's, unless in the URL
    redis_tls_ca_file: str = ""  # with rediss:// URLs: the CA that signed Redis's certificate ("": the system's)
    redis_tls_cert_file: str = ""  # and this client's certificate and key, when Redis asks for one
    redis_tls_key_file: str = ""
    metrics_address: str = DEFAULT_METRICS_ADDRESS  # where VUQ_METRICS_PORT listens

    def __post_init__(self) -> None:
        if not MIN_CHUNK_BYTES <= self.chunk_size <= MAX_CHUNK_BYTES:
            raise ConfigError(f"VUQ_CHUNK_SIZE must be 5MiB..128MiB, not {self.chunk_size} bytes")
        longest_wait = max(self.chunk_time_limit_s, self.retry_backoff_max_s)
        if self.visibility_timeout_s <= longest_wait:
            raise ConfigError(
                f"VUQ_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must exceed both "
                f"VUQ_CHUNK_TIME_LIMIT_S ({self.chunk_time_limit_s}) and VUQ_RETRY_BACKOFF_MAX_S "
                f"({self.retry_backoff_max_s}), or Redis redelivers tasks that are still running"
            )
        if self.stale_after_s <= self.lease_ttl_s:
            raise ConfigError("VUQ_STALE_AFTER_S must exceed VUQ_LEASE_TTL_S")
        if self.retry_backoff_max_s < self.retry_backoff_s:
            raise ConfigError("VUQ_RETRY_BACKOFF_MAX_S must be at least VUQ_RETRY_BACKOFF_S")
        names = [account.name for account in self.keyring]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ConfigError(f"VUQ_ACCOUNTS_FILE: account {twice[0]!r} is named twice (VUQ_API_KEY is "
                              f"{DEFAULT_ACCOUNT!r})")
        uses_sentinel = any(is_sentinel(url) for url in (self.broker_url, self.redis_url))
        if uses_sentinel and not self.sentinel_master:
            raise ConfigError("sentinel:// URLs need VUQ_SENTINEL_MASTER: the name the sentinels monitor")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"VUQ_LOG_FORMAT must be {' or '.join(LOG_FORMATS)}, not {self.log_format!r}")
        if self.source_min_bytes_per_s and self.source_window_s <= 0:
            raise ConfigError("VUQ_SOURCE_WINDOW_S must be above 0 while VUQ_SOURCE_MIN_BYTES_PER_S is set")
        self._complete_redis_urls()

    def _complete_redis_urls(self) -> None:
        """The password and the TLS settings go into the URLs themselves, so the job store (redis-py),
        the broker (kombu) and a producer's Celery app all connect alike; TLS verifies by default."""
        files = {param: getattr(self, attr) for param, attr in zip(
            TLS_FILES, ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file"), strict=True)}
        for attr, name in URL_VARIABLES:
            url = _with_tls(name, _with_password(name, getattr(self, attr), self.redis_password), files)
            object.__setattr__(self, attr, url)  # frozen: completed once, here (and again unchanged by replace())
        _warn_unverified_once([name for attr, name in URL_VARIABLES
                               if uses_tls(getattr(self, attr)) and not verifies_tls(getattr(self, attr))])
        given = [TLS_FILE_VARIABLES[param] for param, path in files.items() if path]
        if given and not any(uses_tls(getattr(self, attr)) for attr, _ in URL_VARIABLES):
            raise ConfigError(f"{given[0]} is set, but neither VUQ_BROKER_URL nor VUQ_REDIS_URL uses TLS "
                              "(rediss://…, or sentinel://…?ssl_cert_reqs=required for TLS to the primary)")

    @property
    def chunk_soft_time_limit_s(self) -> int:
        return max(1, self.chunk_time_limit_s - 60)

    @property
    def sentinel(self) -> SentinelOptions | None:
        """How to find the primary when the URLs name sentinels (None: plain Redis URLs)."""
        return SentinelOptions(self.sentinel_master, self.sentinel_password) if self.sentinel_master else None

    @property
    def keyring(self) -> tuple[AccountConfig, ...]:
        """Every account the workers hold a key for: ``default`` (VUQ_API_KEY) first, then the file's."""
        default = (AccountConfig(DEFAULT_ACCOUNT, self.api_key, self.rate_limits),) if self.api_key else ()
        return (*default, *self.accounts)

    def account(self, name: str) -> AccountConfig | None:
        """The account of that name in the keyring, if any."""
        return next((account for account in self.keyring if account.name == name), None)

    @property
    def source_limits(self) -> SourceLimits:
        """What a worker accepts from a source: its size, and the pace of its reads (VUQ_*SOURCE*)."""
        return SourceLimits(max_bytes=self.max_source_bytes, chunk_deadline_s=self.source_chunk_deadline_s,
                            min_bytes_per_s=self.source_min_bytes_per_s, window_s=self.source_window_s)

    @property
    def broker_use_ssl(self) -> dict[str, object] | None:
        """Celery's ``broker_use_ssl`` for the broker URL's TLS (None without TLS): what Flower's
        broker views connect with (kombu reads the same options from the URL)."""
        return tls_options(self.broker_url) or None

    @property
    def net_policy(self) -> NetPolicy:
        """Which addresses sources and callbacks may reach (VUQ_ALLOWED_PRIVATE_NETS)."""
        return NetPolicy(self.allowed_private_nets)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the VUQ_* variables; a bad value raises ConfigError naming the variable."""
        env = os.environ if env is None else env
        reader, default = _Reader(env), cls()  # every default is written once: on the fields above
        broker = reader.text("VUQ_BROKER_URL", default.broker_url)
        store = reader.text("VUQ_REDIS_URL", broker)
        password = reader.secret("VUQ_REDIS_PASSWORD", "VUQ_REDIS_PASSWORD_FILE")
        _password_once(password, {"VUQ_BROKER_URL": broker, "VUQ_REDIS_URL": store})
        return cls(
            broker_url=broker,
            redis_url=store,
            redis_password=password,
            redis_tls_ca_file=reader.readable("VUQ_REDIS_TLS_CA_FILE"),
            redis_tls_cert_file=reader.readable("VUQ_REDIS_TLS_CERT_FILE"),
            redis_tls_key_file=reader.readable("VUQ_REDIS_TLS_KEY_FILE"),
            metrics_address=reader.text("VUQ_METRICS_ADDRESS", default.metrics_address),
            api_base_url=reader.text("VUQ_API_BASE_URL", default.api_base_url).rstrip("/"),
            api_key=reader.secret("VUQ_API_KEY", "VUQ_API_KEY_FILE"),
            queue=reader.text("VUQ_QUEUE", default.queue),
            chunk_size=reader.size("VUQ_CHUNK_SIZE", default.chunk_size),
            allowed_roots=reader.paths("VUQ_ALLOWED_ROOTS"),
            max_retries=reader.integer("VUQ_MAX_RETRIES", default.max_retries, minimum=0),
            retry_backoff_s=reader.number("VUQ_RETRY_BACKOFF_S", default.retry_backoff_s),
            retry_backoff_max_s=reader.number("VUQ_RETRY_BACKOFF_MAX_S", default.retry_backoff_max_s),
            http_connect_timeout_s=reader.number("VUQ_HTTP_CONNECT_TIMEOUT_S", default.http_connect_timeout_s),
            http_io_timeout_s=reader.number("VUQ_HTTP_IO_TIMEOUT_S", default.http_io_timeout_s),
            chunk_time_limit_s=reader.integer("VUQ_CHUNK_TIME_LIMIT_S", default.chunk_time_limit_s, minimum=60),
            visibility_timeout_s=reader.integer("VUQ_VISIBILITY_TIMEOUT_S", default.visibility_timeout_s,
                                                minimum=60),
            lease_ttl_s=reader.integer("VUQ_LEASE_TTL_S", default.lease_ttl_s, minimum=5),
            stale_after_s=reader.integer("VUQ_STALE_AFTER_S", default.stale_after_s, minimum=10),
            janitor_interval_s=reader.integer("VUQ_JANITOR_INTERVAL_S", default.janitor_interval_s, minimum=1),
            webhook_secret=reader.secret("VUQ_WEBHOOK_SECRET", "VUQ_WEBHOOK_SECRET_FILE"),
            metrics_port=reader.optional_integer("VUQ_METRICS_PORT"),
            flower_basic_auth=reader.secret("VUQ_FLOWER_BASIC_AUTH", "VUQ_FLOWER_BASIC_AUTH_FILE"),
            log_level=reader.text("VUQ_LOG_LEVEL", default.log_level).upper(),
            log_format=reader.text("VUQ_LOG_FORMAT", default.log_format).lower(),
            rate_limits=reader.parsed("VUQ_RATE_LIMITS", parse_rate_limits, default.rate_limits),
            beat_schedule=reader.text("VUQ_BEAT_SCHEDULE", _default_beat_schedule(env)),
            job_retention_s=reader.integer("VUQ_JOB_RETENTION_S", default.job_retention_s, minimum=0),
            failed_job_retention_s=reader.integer("VUQ_FAILED_JOB_RETENTION_S", default.failed_job_retention_s,
                                                  minimum=0),
            allowed_private_nets=reader.parsed("VUQ_ALLOWED_PRIVATE_NETS", parse_allowed_nets,
                                               default.allowed_private_nets),
            sentinel_master=reader.text("VUQ_SENTINEL_MASTER", "") or None,
            sentinel_password=reader.secret("VUQ_SENTINEL_PASSWORD", "VUQ_SENTINEL_PASSWORD_FILE"),
            health_dir=reader.text("VUQ_HEALTH_DIR", default.health_dir),
            health_idle_s=reader.integer("VUQ_HEALTH_IDLE_S", default.health_idle_s, minimum=5),
            live_idle_timeout_s=reader.integer("VUQ_LIVE_IDLE_TIMEOUT_S", default.live_idle_timeout_s, minimum=1),
            accounts=reader.parsed("VUQ_ACCOUNTS_FILE", parse_accounts_file, default.accounts),
            tenant_weights=reader.parsed("VUQ_TENANT_WEIGHTS", parse_weights, default.tenant_weights),
            max_source_bytes=reader.size("VUQ_MAX_SOURCE_BYTES", default.max_source_bytes),
            source_chunk_deadline_s=reader.number("VUQ_SOURCE_CHUNK_DEADLINE_S", default.source_chunk_deadline_s),
            source_min_bytes_per_s=reader.size("VUQ_SOURCE_MIN_BYTES_PER_S", default.source_min_bytes_per_s),
            source_window_s=reader.number("VUQ_SOURCE_WINDOW_S", default.source_window_s),
        )

    def secrets(self) -> list[str]:
        """Every secret this process holds, for log redaction (Redis passwords included, also as they
        are written in a URL)."""
        passwords = [url_password(url) for url in (self.broker_url, self.redis_url)]
        keys = [getattr(self, name) for name in ("api_key", "webhook_secret", "flower_basic_auth",
                                                 "sentinel_password", "redis_password")]
        accounts = [account.api_key for account in self.accounts]
        quoted = [quote(p, safe="") for p in passwords if p]
        return list(dict.fromkeys(value for value in (*keys, *accounts, *passwords, *quoted) if value))


def _warn_unverified_once(names: list[str]) -> None:
    """Say it once a process (workers, beat and producers each build their settings): TLS is not verified."""
    if names and not _warned_unverified:
        _warned_unverified.append(True)
        log.warning("%s: TLS verification is off (ssl_cert_reqs=none or ssl_check_hostname=false); anyone on the "
                    "network path can pose as that Redis", " and ".join(names))


def _password_once(password: str | None, urls: Mapping[str, str]) -> None:
    """A Redis password comes from VUQ_REDIS_PASSWORD(_FILE) or from the URLs, not from both."""
    in_url = [name for name, url in urls.items() if url_password(url)]
    if password and in_url:
        raise ConfigError(f"{PASSWORD_VARIABLES} and a password in {in_url[0]}: give the Redis password once")


def _with_password(name: str, url: str, password: str | None) -> str:
    if not password:
        return url
    if url_password(url) not in (None, password):
        raise ConfigError(f"{PASSWORD_VARIABLES} and a password in {name}: give the Redis password once")
    return with_password(url, password)


def _with_tls(name: str, url: str, files: Mapping[str, str]) -> str:
    """A TLS URL with verification on unless it says otherwise, and the settings' files in its query;
    ConfigError naming ``name`` for TLS options it cannot take."""
    query = url_query(url)
    if not uses_tls(url):
        if any(key.startswith(TLS_PREFIX) for key in query):
            raise ConfigError(f"{name}: ssl_* parameters need a rediss:// URL")
        return url
    reqs = cert_reqs_name(query.get("ssl_cert_reqs", "required"))
    if reqs is None:
        raise ConfigError(f"{name}: ssl_cert_reqs must be required, optional or none, not {query['ssl_cert_reqs']!r}")
    wanted = {key: value for key, value in query.items() if key.startswith(TLS_PREFIX)}  # in every sentinel's part
    wanted["ssl_cert_reqs"] = reqs
    if "ssl_check_hostname" in query:  # redis-py and kombu read other spellings differently
        wanted["ssl_check_hostname"] = "false" if is_false(query["ssl_check_hostname"]) else "true"
    for param, path in files.items():
        if path and query.get(param, path) != path:
            raise ConfigError(f"{name}'s {param} and {TLS_FILE_VARIABLES[param]} differ: give one")
        if path:
            wanted[param] = path
    return with_query(url, wanted)


def parse_weights(text: str) -> dict[str, int]:
    """``live=4,backfill=1``: each tenant's weight (a whole number, at least 1); ValueError says what is wrong."""
    weights: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        tenant, sep, value = item.partition("=")
        if not sep or not tenant.strip() or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"{item!r} is not TENANT=WEIGHT with WEIGHT a whole number of at least 1")
        weights[tenant.strip()] = int(value)
    return weights


def _default_beat_schedule(env: Mapping[str, str]) -> str:
    """``$XDG_STATE_HOME/vuq/celerybeat-schedule``, else under ``~/.local/state``."""
    state_home = env.get("XDG_STATE_HOME", "").strip()
    return str(Path(state_home) / "vuq" / "celerybeat-schedule") if state_home else DEFAULT_BEAT_SCHEDULE


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str) -> str:
        value = self.env.get(name, "").strip()
        return value or default

    def secret(self, name: str, file_name: str) -> str | None:
        value, path = self.env.get(name, "").strip(), self.env.get(file_name, "").strip()
        if value and path:
            raise ConfigError(f"set {name} or {file_name}, not both")
        if not path:
            return value or None
        try:
            content = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{file_name}: cannot read {path}: {exc.strerror}") from None
        if not content:
            raise ConfigError(f"{file_name}: {path} is empty")
        return content

    def readable(self, name: str) -> str:
        """A file this process must read (a TLS CA, certificate or key); "" when not set."""
        path = self.env.get(name, "").strip()
        if path and not os.access(path, os.R_OK):
            reason = "no such file" if not os.path.exists(path) else "not readable by this user"
            raise ConfigError(f"{name}: cannot read {path}: {reason}")
        return path

    def size(self, name: str, default: int) -> int:
        raw = self.env.get(name, "").strip()
        try:
            return parse_size(raw) if raw else default
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    def number(self, name: str, default: float) -> float:
        raw = self.env.get(name, "").strip()
        try:
            value = float(raw) if raw else default
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {raw!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number of seconds, at least 0, not {raw!r}")
        return value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.optional_integer(name)
        value = default if value is None else value
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}")
        return value

    def optional_integer(self, name: str) -> int | None:
        raw = self.env.get(name, "").strip()
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None

    def parsed(self, name: str, parse: Callable[[str], T], default: T) -> T:
        """A value in its own syntax; the parser's ValueError becomes a ConfigError naming ``name``."""
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    def paths(self, name: str) -> tuple[Path, ...]:
        raw = self.env.get(name, "")
        roots = []
        for part in filter(None, (p.strip() for p in raw.split(os.pathsep))):
            path = Path(part)
            if not path.is_absolute():
                raise ConfigError(f"{name}: {part!r} is not an absolute path")
            roots.append(path.resolve())
        return tuple(roots)


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings
