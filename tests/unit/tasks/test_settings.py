"""tasks.settings: the VUQ_* variables, validated with errors that name them."""

from __future__ import annotations

import logging
import ssl
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest

from tasks import settings as settings_module
from tasks.constants import DEFAULT_CHUNK_BYTES, DEFAULT_QUEUE, MIB
from tasks.errors import ConfigError
from tasks.job.connections import url_password, url_query, url_username
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


# -- Redis: passwords out of URLs, TLS that verifies ---------------------------------------------------
REDIS_PASSWORD = "s3cr:t/p@ss"


def test_the_redis_password_comes_from_a_variable_or_a_file(tmp_path: Path) -> None:
    settings = Settings.from_env({"VUQ_BROKER_URL": "redis://redis:6379/0", "VUQ_REDIS_PASSWORD": REDIS_PASSWORD})
    assert settings.redis_password == REDIS_PASSWORD
    assert url_password(settings.broker_url) == url_password(settings.redis_url) == REDIS_PASSWORD
    password_file = tmp_path / "redis-password"
    password_file.write_text(REDIS_PASSWORD + "\n", encoding="utf-8")
    from_file = Settings.from_env({"VUQ_REDIS_PASSWORD_FILE": str(password_file)})
    assert url_password(from_file.broker_url) == REDIS_PASSWORD and from_file.redis_password == REDIS_PASSWORD


def test_an_acl_user_in_the_url_keeps_its_name_with_the_password_from_a_variable() -> None:
    settings = Settings.from_env({"VUQ_BROKER_URL": "redis://vuq@redis:6379/0", "VUQ_REDIS_PASSWORD": "pw"})
    assert url_username(settings.broker_url) == "vuq" and url_password(settings.broker_url) == "pw"


def test_a_password_in_the_url_still_works() -> None:
    settings = Settings.from_env({"VUQ_BROKER_URL": "redis://:hunter2@redis:6379/0"})
    assert url_password(settings.broker_url) == "hunter2" and settings.redis_password is None


@pytest.mark.parametrize("url_variable", ["VUQ_BROKER_URL", "VUQ_REDIS_URL"])
def test_a_password_both_in_a_url_and_a_variable_is_refused_naming_both(url_variable: str) -> None:
    message = config_error({url_variable: "redis://:hunter2@redis:6379/0", "VUQ_REDIS_PASSWORD": REDIS_PASSWORD})
    assert "VUQ_REDIS_PASSWORD" in message and url_variable in message
    assert "hunter2" not in message and REDIS_PASSWORD not in message


def test_password_and_password_file_together_name_both(tmp_path: Path) -> None:
    message = config_error({"VUQ_REDIS_PASSWORD": REDIS_PASSWORD, "VUQ_REDIS_PASSWORD_FILE": str(tmp_path / "p")})
    assert "VUQ_REDIS_PASSWORD " in message and "VUQ_REDIS_PASSWORD_FILE" in message


def test_redis_passwords_are_secrets_and_never_in_repr() -> None:
    settings = Settings.from_env({"VUQ_REDIS_PASSWORD": REDIS_PASSWORD, "VUQ_SENTINEL_PASSWORD": "sentinel-pw"})
    assert REDIS_PASSWORD not in repr(settings) and quote(REDIS_PASSWORD, safe="") not in repr(settings)
    assert {REDIS_PASSWORD, quote(REDIS_PASSWORD, safe=""), "sentinel-pw"} <= set(settings.secrets())
    assert len(settings.secrets()) == len(set(settings.secrets()))


def test_completing_the_urls_again_changes_nothing() -> None:
    settings = Settings.from_env({"VUQ_BROKER_URL": "rediss://redis:6380/0", "VUQ_REDIS_PASSWORD": REDIS_PASSWORD,
                                  "VUQ_REDIS_TLS_CA_FILE": __file__})
    assert replace(settings, queue="other").broker_url == settings.broker_url


def test_rediss_verifies_by_default_and_takes_the_files_from_settings(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("pem", encoding="utf-8")
    plain = Settings.from_env({"VUQ_BROKER_URL": "rediss://redis:6380/0"})
    assert url_query(plain.broker_url) == {"ssl_cert_reqs": "required"}
    assert plain.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    settings = Settings.from_env({"VUQ_BROKER_URL": "rediss://redis:6380/0", "VUQ_REDIS_TLS_CA_FILE": str(ca),
                                  "VUQ_REDIS_TLS_CERT_FILE": str(cert), "VUQ_REDIS_TLS_KEY_FILE": str(key)})
    for url in (settings.broker_url, settings.redis_url):
        assert url_query(url) == {"ssl_cert_reqs": "required", "ssl_ca_certs": str(ca), "ssl_certfile": str(cert),
                                  "ssl_keyfile": str(key)}
    assert settings.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca),
                                       "ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    assert Settings().broker_use_ssl is None


def test_the_files_may_come_from_the_url_instead(tmp_path: Path) -> None:
    url = f"rediss://redis:6380/0?ssl_ca_certs={tmp_path}/ca.pem&ssl_cert_reqs=CERT_REQUIRED"
    settings = Settings.from_env({"VUQ_BROKER_URL": url})
    assert url_query(settings.broker_url) == {"ssl_ca_certs": f"{tmp_path}/ca.pem", "ssl_cert_reqs": "required"}


def test_the_same_file_in_the_url_and_the_setting_is_fine_another_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem", encoding="utf-8")
    same = Settings.from_env({"VUQ_BROKER_URL": f"rediss://redis/0?ssl_ca_certs={ca}",
                              "VUQ_REDIS_TLS_CA_FILE": str(ca)})
    assert url_query(same.broker_url)["ssl_ca_certs"] == str(ca)
    message = config_error({"VUQ_BROKER_URL": "rediss://redis/0?ssl_ca_certs=/elsewhere.pem",
                            "VUQ_REDIS_TLS_CA_FILE": str(ca)})
    assert "VUQ_BROKER_URL" in message and "ssl_ca_certs" in message and "VUQ_REDIS_TLS_CA_FILE" in message


def test_tls_files_must_be_readable_and_need_a_tls_url(tmp_path: Path) -> None:
    missing = config_error({"VUQ_BROKER_URL": "rediss://redis/0", "VUQ_REDIS_TLS_CA_FILE": str(tmp_path / "no.pem")})
    assert "VUQ_REDIS_TLS_CA_FILE" in missing and "no.pem" in missing
    assert "rediss://" in config_error({"VUQ_REDIS_TLS_CERT_FILE": __file__})  # redis:// by default
    assert "rediss://" in config_error({"VUQ_BROKER_URL": "redis://redis/0?ssl_ca_certs=/ca.pem"})


def test_only_one_of_the_two_urls_may_use_tls() -> None:
    settings = Settings.from_env({"VUQ_BROKER_URL": "redis://broker/0", "VUQ_REDIS_URL": "rediss://store/0",
                                  "VUQ_REDIS_TLS_CA_FILE": __file__})
    assert settings.broker_url == "redis://broker/0" and settings.broker_use_ssl is None
    assert url_query(settings.redis_url) == {"ssl_cert_reqs": "required", "ssl_ca_certs": __file__}


def test_an_unknown_cert_reqs_value_is_refused() -> None:
    message = config_error({"VUQ_BROKER_URL": "rediss://redis/0?ssl_cert_reqs=maybe"})
    assert "VUQ_BROKER_URL" in message and "required, optional or none" in message


@pytest.mark.parametrize("opt_out", ["ssl_cert_reqs=none", "ssl_cert_reqs=CERT_NONE", "ssl_check_hostname=false"])
def test_turning_verification_off_is_explicit_and_warned_once_per_process(
        opt_out: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "_warned_unverified", [])
    env = {"VUQ_BROKER_URL": f"rediss://redis:6380/0?{opt_out}"}
    with caplog.at_level(logging.WARNING, logger="tasks.settings"):
        first = Settings.from_env(env)
        Settings.from_env(env)
    warnings = [r.getMessage() for r in caplog.records if "verification is off" in r.getMessage()]
    assert len(warnings) == 1 and "VUQ_BROKER_URL and VUQ_REDIS_URL" in warnings[0]
    key, value = opt_out.split("=")
    assert url_query(first.broker_url)[key] == value.lower().removeprefix("cert_")
    assert first.broker_use_ssl is not None


def test_a_sentinel_url_with_tls_parameters_reaches_the_primary_over_tls() -> None:
    settings = Settings.from_env({"VUQ_BROKER_URL": "sentinel://vuq@h1:26379/0?ssl_ca_certs=/ca.pem;sentinel://h2:26379",
                                  "VUQ_SENTINEL_MASTER": "primary", "VUQ_REDIS_PASSWORD": "pw"})
    first, second = settings.broker_url.split(";")
    assert url_query(first) == url_query(second) == {"ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": "required"}
    assert url_username(settings.broker_url) == "vuq" and url_password(second) == "pw"
    assert settings.broker_use_ssl == {"ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": ssl.CERT_REQUIRED}


def test_metrics_listen_on_loopback_unless_told() -> None:
    assert Settings.from_env({}).metrics_address == "127.0.0.1"
    assert Settings.from_env({"VUQ_METRICS_ADDRESS": "0.0.0.0"}).metrics_address == "0.0.0.0"


def test_the_log_format_is_text_unless_json_is_asked_for() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"VUQ_LOG_FORMAT": " JSON "}).log_format == "json"
    with pytest.raises(ConfigError, match="VUQ_LOG_FORMAT must be text or json, not 'yaml'"):
        Settings.from_env({"VUQ_LOG_FORMAT": "yaml"})
