"""Redis over TLS (``rediss://``) against a real TLS-only redis-server: a worker and a producer run a job
end to end with the CA configured; without the CA, with another CA or under a name the certificate does
not hold, the producer and the worker refuse in one line naming the problem; ``ssl_cert_reqs=none``
works and is warned about; a server that asks for a client certificate gets the one the settings name."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import EnqueueError, enqueue_upload
from tasks.constants import MIB
from tasks.job import job_store
from tasks.job.record import State
from tasks.settings import Settings
from tests.support.stack import Stack, running_stack
from tests.support.tls_redis import CertificateAuthority, TlsRedis, running_tls_redis
from workers.lab.localstack import sample_file

UNVERIFIED = "its TLS certificate could not be verified"
WARNING = "TLS verification is off"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(Path(tmp_path_factory.mktemp("ca")))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority) -> Iterator[TlsRedis]:
    with running_tls_redis(Path(tmp_path_factory.mktemp("tls-redis")), ca) as server:
        yield server


@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory, tls: TlsRedis, ca: CertificateAuthority) -> Iterator[Stack]:
    """A worker (prefork) and a producer over rediss://, trusting the test CA."""
    tmp = Path(tmp_path_factory.mktemp("tls-stack"))
    with running_stack(tmp, tls.url(), workers=1, concurrency=2, VUQ_REDIS_TLS_CA_FILE=str(ca.cert),
                       VUQ_HEALTH_DIR=str(tmp / "health")) as stack:
        yield stack


def vuq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VUQ_")}
    return subprocess.run([sys.executable, "-m", "workers.console", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def worker(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """A worker that must refuse to start (it would run until killed otherwise)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VUQ_")}
    argv = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "vuq-tls-refused", "-c", "1",
            "--without-gossip", "--without-mingle"]
    return subprocess.run(argv, env={**base, "VUQ_HEALTH_DIR": str(tmp / "health"), **env}, capture_output=True,
                          text=True, timeout=60)


def test_a_worker_and_a_producer_run_a_job_over_verified_tls(verified: Stack, ca: CertificateAuthority) -> None:
    url = verified.settings.broker_url
    assert url.startswith("rediss://") and "ssl_cert_reqs=required" in url
    path, sha = verified.file("tls.bin", 7 * MIB, seed=21)
    job_id = verified.enqueue(path, chunk_size="5MiB")
    job = verified.wait_final(job_id, 90)
    assert job.state == State.DONE, job.error
    assert verified.emulator.video(str(job.video_id))["sha256"] == sha
    log = verified.logs()
    assert "insecure" not in log and WARNING not in log  # kombu's fallback never happened


def test_vuq_health_over_tls(verified: Stack) -> None:
    out = vuq("health", env=verified.env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: ")


@pytest.mark.parametrize("trust", ["none", "another CA"])
def test_the_producer_refuses_an_unverified_redis_in_one_line(tls: TlsRedis, tmp_path: Path, trust: str) -> None:
    env = {"VUQ_BROKER_URL": tls.url(), "VUQ_ALLOWED_ROOTS": str(tmp_path)}
    if trust == "another CA":
        env["VUQ_REDIS_TLS_CA_FILE"] = str(CertificateAuthority.create(tmp_path / "other", "another CA").cert)
    sample_file(tmp_path / "v.bin", MIB)
    with pytest.raises(EnqueueError, match=UNVERIFIED):
        enqueue_upload(str(tmp_path / "v.bin"), token="to1", settings=Settings.from_env(env))
    (tmp_path / "token").write_text("to1", encoding="utf-8")
    out = vuq("enqueue", str(tmp_path / "v.bin"), "--token-file", str(tmp_path / "token"), env=env)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"vuq enqueue: Redis at 127.0.0.1:{tls.port}: {UNVERIFIED} (")
    assert "VUQ_REDIS_TLS_CA_FILE" in out.stderr


def test_a_name_the_certificate_does_not_hold_is_refused(tls: TlsRedis, ca: CertificateAuthority,
                                                         tmp_path: Path) -> None:
    env = {"VUQ_BROKER_URL": tls.url(host="localhost"), "VUQ_REDIS_TLS_CA_FILE": str(ca.cert)}
    out = vuq("jobs", env=env)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "its TLS certificate does not name this host" in out.stderr and "localhost" in out.stderr


@pytest.mark.parametrize("trust", ["none", "another CA"])
def test_the_worker_refuses_an_unverified_redis_in_one_line(tls: TlsRedis, tmp_path: Path, trust: str) -> None:
    env = {"VUQ_BROKER_URL": tls.url()}
    if trust == "another CA":
        env["VUQ_REDIS_TLS_CA_FILE"] = str(CertificateAuthority.create(tmp_path / "other", "another CA").cert)
    out = worker(env, tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if "refuses to start" in line]
    assert len(lines) == 1 and UNVERIFIED in lines[0], out.stderr
    assert lines[0].endswith("vuq worker refuses to start: Redis (VUQ_BROKER_URL and VUQ_REDIS_URL) at "
                             f"127.0.0.1:{tls.port}: {UNVERIFIED} ({lines[0].split(' (', 2)[2]}")
    assert " ready." not in out.stdout + out.stderr


def test_the_explicit_opt_out_works_and_warns_once_per_process(tmp_path: Path, tls: TlsRedis) -> None:
    url = tls.url(query="ssl_cert_reqs=none")
    with running_stack(tmp_path, url, workers=1, concurrency=1, VUQ_HEALTH_DIR=str(tmp_path / "health")) as stack:
        path, sha = stack.file("optout.bin", 2 * MIB, seed=22)
        out = vuq("enqueue", str(path), "--token", stack.emulator.create_upload_token(), env=stack.env)
        assert out.returncode == 0, out.stderr
        job_id = out.stdout.strip()
        assert stack.wait_final(job_id, 60).state == State.DONE
        assert out.stderr.count(WARNING) == 1  # the producer said it once
        assert "VUQ_BROKER_URL and VUQ_REDIS_URL: TLS verification is off" in out.stderr
        log = stack.workers[0].log()
        assert log.count(WARNING) == 1, log  # the worker once (its pool children inherit that)
        job = stack.wait_final(job_id, 60)
        assert stack.emulator.video(str(job.video_id))["sha256"] == sha


def test_a_client_certificate_from_the_settings(tmp_path: Path, ca: CertificateAuthority) -> None:
    client = ca.issue("vuq-client", client=True)
    with running_tls_redis(tmp_path / "mtls", ca, client_certs=True) as server:
        env = {"VUQ_BROKER_URL": server.url(), "VUQ_REDIS_TLS_CA_FILE": str(ca.cert)}
        out = vuq("jobs", env=env)
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
        assert "the TLS handshake failed" in out.stderr and "VUQ_REDIS_TLS_CERT_FILE" in out.stderr
        settings = Settings.from_env({**env, "VUQ_REDIS_TLS_CERT_FILE": str(client.cert),
                                      "VUQ_REDIS_TLS_KEY_FILE": str(client.key)})
        store = job_store(settings)
        assert store.now() > 0 and store.page() == []
