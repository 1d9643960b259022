"""Every `vuq` subcommand ends a failure in one line, never a traceback: exit status 2 for
configuration and usage, 1 when the work could not be done; `--debug` shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_port

JOB_COMMANDS = [["status", "x"], ["jobs"], ["watch", "x"], ["resume", "x"], ["cancel", "x"], ["retry-failed"]]
EVERY_COMMAND = [*JOB_COMMANDS, ["enqueue", "/videos/a.mp4", "--no-source-check"], ["worker"], ["flower"],
                 ["beat"], ["demo"]]


def vuq(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VUQ_")}
    return subprocess.run([sys.executable, "-m", "workers.console", *args], env={**base, **env}, capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: c[0])
def test_a_bad_setting_is_one_line_naming_it_with_status_2(command: list[str]) -> None:
    out = vuq(*command, VUQ_MAX_RETRIES="abc")
    assert out.returncode == 2
    assert one_line(out) == f"vuq {command[0]}: VUQ_MAX_RETRIES must be a whole number, not 'abc'"


@pytest.mark.parametrize("command", [*JOB_COMMANDS, ["enqueue", "/videos/a.mp4", "--no-source-check"]],
                         ids=lambda c: c[0])
def test_unreachable_redis_names_host_and_port_never_the_password(command: list[str]) -> None:
    port = free_port()
    out = vuq(*command, VUQ_BROKER_URL=f"redis://:hunter2-secret@127.0.0.1:{port}/0")
    assert out.returncode == 1
    line = one_line(out)
    assert f"127.0.0.1:{port}" in line and "hunter2-secret" not in out.stdout + out.stderr
    assert "Redis" in line


@pytest.mark.parametrize("command", ["status", "watch", "resume", "cancel"])
def test_an_unknown_job_id_is_one_line_with_status_1(command: str, redis_url: str) -> None:
    out = vuq(command, "no-such-job-4711", VUQ_BROKER_URL=redis_url)
    assert out.returncode == 1
    assert one_line(out) == f"vuq {command}: no job 'no-such-job-4711'"


def test_a_missing_local_source_is_refused_before_anything_is_enqueued(tmp_path: Path, redis_url: str) -> None:
    out = vuq("enqueue", str(tmp_path / "nonexistent.mp4"), VUQ_BROKER_URL=redis_url)
    assert out.returncode == 2 and out.stdout == ""
    assert one_line(out) == f"vuq enqueue: source: no such file: {tmp_path / 'nonexistent.mp4'}"


def test_a_relative_missing_source_names_the_absolute_path(tmp_path: Path, redis_url: str) -> None:
    out = vuq("enqueue", "nope.mp4", cwd=tmp_path, VUQ_BROKER_URL=redis_url)
    assert out.returncode == 2 and str(tmp_path / "nope.mp4") in one_line(out)


def test_a_source_outside_the_allowed_roots_is_refused(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "videos").mkdir()
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"x" * 1024)
    out = vuq("enqueue", str(outside), VUQ_BROKER_URL=redis_url, VUQ_ALLOWED_ROOTS=str(tmp_path / "videos"))
    assert out.returncode == 2 and out.stdout == ""
    line = one_line(out)
    assert "outside the allowed roots" in line and str(tmp_path / "videos") in line


def test_a_directory_source_is_refused(tmp_path: Path, redis_url: str) -> None:
    out = vuq("enqueue", str(tmp_path), VUQ_BROKER_URL=redis_url)
    assert out.returncode == 2 and "is a directory" in one_line(out)


def test_debug_shows_the_traceback() -> None:
    out = vuq("--debug", "status", "x", VUQ_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 1
    assert "Traceback" in out.stderr and out.stderr.strip().splitlines()[-1].startswith("vuq status: cannot reach")


@pytest.mark.parametrize("command", ["worker", "flower", "beat", "emulator", "enqueue", "status", "jobs"])
def test_help_of_every_subcommand_is_vuqs_own(command: str) -> None:
    out = vuq(command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: vuq {command}")


@pytest.mark.parametrize(("command", "flag", "expected"), [("worker", "--celery-help", "celery worker"),
                                                         ("beat", "--celery-help", "celery beat"),
                                                         ("flower", "--flower-help", "--basic_auth")])
def test_the_wrapped_tools_own_help_is_one_flag_away(command: str, flag: str, expected: str) -> None:
    out = vuq(command, flag)
    assert out.returncode == 0 and expected in out.stdout, out.stdout[-500:] + out.stderr[-500:]


def test_importing_the_packages_reads_no_environment_and_connects_nowhere() -> None:
    code = ("import tasks, workers, tasks.uploads, tasks.upkeep, workers.console.cli, workers.lab.localstack; "
            "print('imported')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "VUQ_MAX_RETRIES": "abc", "VUQ_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert out.returncode == 0 and out.stdout.strip() == "imported", out.stderr
