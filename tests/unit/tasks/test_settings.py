"""tasks.settings: the VUQ_* variables, validated with errors that name them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import settings as settings_module
from tasks.constants import DEFAULT_CHUNK_BYTES, DEFAULT_QUEUE, MIB
from tasks.errors import ConfigError
from tasks.settings import DEFAULT_API_BASE_URL, DEFAULT_BROKER_URL, Settings, get_settings

API_KEY = "apikey-0123456789abcdef"


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return str(info.value)


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.broker_url == settings.redis_url == DEFAULT_BROKER_URL
    assert settings.api_base_url == DEFAULT_API_BASE_URL
    assert settings.api_key is None
    assert settings.queue == DEFAULT_QUEUE
    assert settings.chunk_size == DEFAULT_CHUNK_BYTES
    assert settings.allowed_roots == ()
    assert settings.chunk_soft_time_limit_s == 1740
    assert settings.secrets() == []


def test_values_are_read_and_converted(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "VUQ_BROKER_URL": "redis://broker:6379/1", "VUQ_API_BASE_URL": "https://sandbox.api.video/",
        "VUQ_API_KEY": f"  {API_KEY} ", "VUQ_CHUNK_SIZE": "8MiB", "VUQ_ALLOWED_ROOTS": f"{tmp_path}:/srv/videos",
        "VUQ_MAX_RETRIES": "3", "VUQ_RETRY_BACKOFF_S": "0.5", "VUQ_METRICS_PORT": "9100", "VUQ_LOG_LEVEL": "debug",
    })
    assert settings.redis_url == "redis://broker:6379/1"  # follows the broker unless set
    assert settings.api_base_url == "https://sandbox.api.video"
    assert settings.api_key == API_KEY
    assert settings.chunk_size == 8 * MIB
    assert settings.allowed_roots == (tmp_path.resolve(), Path("/srv/videos"))
    assert (settings.max_retries, settings.retry_backoff_s, settings.metrics_port) == (3, 0.5, 9100)
    assert settings.log_level == "DEBUG"


def test_api_key_file_is_read_and_stripped(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{API_KEY}\n", encoding="utf-8")
    assert Settings.from_env({"VUQ_API_KEY_FILE": str(key_file)}).api_key == API_KEY


def test_empty_or_missing_key_file_names_the_variable(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    assert "VUQ_API_KEY_FILE" in config_error({"VUQ_API_KEY_FILE": str(empty)})
    assert "VUQ_API_KEY_FILE" in config_error({"VUQ_API_KEY_FILE": str(tmp_path / "missing")})


def test_key_and_key_file_together_name_both(tmp_path: Path) -> None:
    message = config_error({"VUQ_API_KEY": API_KEY, "VUQ_API_KEY_FILE": str(tmp_path / "key")})
    assert "VUQ_API_KEY " in message and "VUQ_API_KEY_FILE" in message
    assert API_KEY not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [("VUQ_MAX_RETRIES", "many"), ("VUQ_LEASE_TTL_S", "1.5"), ("VUQ_METRICS_PORT", "http"),
     ("VUQ_RETRY_BACKOFF_S", "fast"), ("VUQ_CHUNK_SIZE", "big"), ("VUQ_MAX_RETRIES", "-1"),
     ("VUQ_LEASE_TTL_S", "1"), ("VUQ_HTTP_IO_TIMEOUT_S", "-3")],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    assert name in config_error({name: value})


@pytest.mark.parametrize("size", ["4MiB", "129MiB"])
def test_chunk_size_out_of_bounds(size: str) -> None:
    assert "VUQ_CHUNK_SIZE" in config_error({"VUQ_CHUNK_SIZE": size})


@pytest.mark.parametrize("visibility", ["1800", "1000"])
def test_visibility_timeout_must_exceed_the_time_limit(visibility: str) -> None:
    message = config_error({"VUQ_VISIBILITY_TIMEOUT_S": visibility, "VUQ_CHUNK_TIME_LIMIT_S": "1800"})
    assert "VUQ_VISIBILITY_TIMEOUT_S" in message and "VUQ_CHUNK_TIME_LIMIT_S" in message


def test_visibility_timeout_must_exceed_the_backoff_cap() -> None:
    assert "VUQ_RETRY_BACKOFF_MAX_S" in config_error({"VUQ_VISIBILITY_TIMEOUT_S": "600",
                                                       "VUQ_CHUNK_TIME_LIMIT_S": "300",
                                                       "VUQ_RETRY_BACKOFF_MAX_S": "600"})


def test_stale_after_must_exceed_the_lease() -> None:
    assert "VUQ_STALE_AFTER_S" in config_error({"VUQ_STALE_AFTER_S": "60", "VUQ_LEASE_TTL_S": "60"})


def test_backoff_cap_below_base() -> None:
    assert "VUQ_RETRY_BACKOFF_MAX_S" in config_error({"VUQ_RETRY_BACKOFF_S": "10", "VUQ_RETRY_BACKOFF_MAX_S": "5"})


def test_relative_allowed_root_is_refused() -> None:
    message = config_error({"VUQ_ALLOWED_ROOTS": "/srv/videos:videos"})
    assert "VUQ_ALLOWED_ROOTS" in message and "'videos'" in message


def test_repr_hides_secrets_and_secrets_lists_them() -> None:
    settings = Settings.from_env({"VUQ_API_KEY": API_KEY, "VUQ_WEBHOOK_SECRET": "whsec-abcdef",
                                  "VUQ_FLOWER_BASIC_AUTH": "admin:pa55word"})
    text = repr(settings)
    assert API_KEY not in text and "whsec-abcdef" not in text and "pa55word" not in text
    assert sorted(settings.secrets()) == sorted([API_KEY, "whsec-abcdef", "admin:pa55word"])


def test_a_redis_password_is_not_shown() -> None:
    settings = Settings.from_env({"VUQ_BROKER_URL": "redis://:hunter2@redis:6379/0"})
    assert "hunter2" not in repr(settings)


def test_nan_is_not_a_number_of_seconds() -> None:
    assert "VUQ_HTTP_IO_TIMEOUT_S" in config_error({"VUQ_HTTP_IO_TIMEOUT_S": "nan"})


def test_get_settings_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "_settings", None)
    monkeypatch.setenv("VUQ_QUEUE", "special")
    first = get_settings()
    monkeypatch.setenv("VUQ_QUEUE", "other")
    assert first.queue == "special" and get_settings() is first
