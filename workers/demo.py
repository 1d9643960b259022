"""`vuq demo` (and `make demo`): the whole system on this machine, end to end.

Redis (VUQ_BROKER_URL if it answers, else a private redis-server), the emulator,
one worker and Flower are started; a sample file is generated and uploaded with a
delegated token the demo creates; the finished video and the Flower URL are
printed; everything is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx
import redis

from tasks.jobstore import JobStore
from tasks.producer import enqueue_upload
from tasks.redact import safe_url
from tasks.runtime import redis_client
from tasks.settings import Settings, get_settings
from tasks.sizes import format_size
from workers import supervise
from workers.progress import follow

DEMO_API_KEY = "demo-api-key"
_BLOCK = 8 << 20


class DemoError(Exception):
    """The demo cannot run here; the message says what to do."""


def run_demo(size: int, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="vuq-demo-"))
    try:
        with ExitStack() as stack:
            return _run(stack, workdir, size)
    except DemoError as exc:
        print(f"vuq demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nvuq demo: interrupted; everything was stopped", file=sys.stderr)
        return 130
    finally:
        if keep:
            print(f"demo files kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(stack: ExitStack, workdir: Path, size: int) -> int:
    say = _say
    redis_url = _redis(stack, workdir)
    say(f"redis     {safe_url(redis_url)}")
    emulator = _child(stack, workdir, "emulator", supervise.python(
        "-m", "emulator", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(workdir / "emulator"),
        "--api-key", DEMO_API_KEY), os.environ)
    emulator.wait_for(lambda log: "listening on http://" in log, 30)
    api_url = re.search(r"listening on (http://\S+)", emulator.log()).group(1)  # type: ignore[union-attr]
    say(f"emulator  {api_url}  (a local api.video; see README)")
    sources = workdir / "videos"
    sources.mkdir()
    env = {**os.environ, "VUQ_BROKER_URL": redis_url, "VUQ_API_BASE_URL": api_url, "VUQ_API_KEY": DEMO_API_KEY,
           "VUQ_ALLOWED_ROOTS": str(sources), "VUQ_QUEUE": f"vuq-demo-{secrets.token_hex(3)}"}
    env.pop("VUQ_API_KEY_FILE", None)
    worker = _child(stack, workdir, "worker", supervise.python(
        "-m", "celery", "-A", "workers", "worker", "-Q", env["VUQ_QUEUE"], "-c", "2", "-n", "demo@%h",
        "--without-gossip", "--without-mingle", "--loglevel", "INFO"), env)
    flower_port = _free_port()
    flower = _child(stack, workdir, "flower", supervise.python(
        "-m", "celery", "-A", "workers", "flower", f"--port={flower_port}", "--address=127.0.0.1"), env)
    worker.wait_for(lambda log: " ready." in log, 60)
    flower.wait_for(lambda log: "Visit me at" in log or "Registered" in log, 60)
    flower_url = f"http://127.0.0.1:{flower_port}"
    say(f"worker    ready (logs in {worker.log_path})")
    say(f"flower    {flower_url}")

    sample = sources / "sample-video.mp4"
    say(f"generating a {format_size(size)} sample video file…")
    _generate(sample, size)
    token = _upload_token(api_url)
    settings = Settings(broker_url=redis_url, redis_url=redis_url, api_base_url=api_url, queue=env["VUQ_QUEUE"])
    job_id = enqueue_upload(str(sample), token=token, chunk_size="50MiB", settings=settings,
                            video={"title": "vuq demo", "description": "Uploaded by vuq demo",
                                   "tags": ["vuq", "demo"], "metadata": {"source": "make demo"}})
    say(f"enqueued  job {job_id}")
    job = follow(JobStore(redis_client(redis_url)), job_id, out=sys.stdout)
    if job.state != "done":
        raise DemoError(f"the job ended {job.state}: {job.error}")
    video = httpx.get(f"{api_url}/videos/{job.video_id}", auth=(DEMO_API_KEY, ""), timeout=30).json()
    say("")
    say(f"video     {video['videoId']}")
    say(f"title     {video.get('title')}")
    say(f"tags      {', '.join(video.get('tags') or [])}")
    say(f"player    {(video.get('assets') or {}).get('player')}")
    say(f"flower    {flower_url}  (the job's tasks: search kwargs:{job_id})")
    say("stopping the demo's processes…")
    return 0


def _redis(stack: ExitStack, workdir: Path) -> str:
    url = get_settings().broker_url
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url
    except redis.RedisError:
        pass
    binary = shutil.which("redis-server")
    if not binary:
        raise DemoError(f"no Redis answers at {safe_url(url)} and redis-server is not installed: install it "
                        "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) "
                        "or set VUQ_BROKER_URL to a Redis that answers")
    port = _free_port()
    child = _child(stack, workdir, "redis", [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                             "--appendonly", "no", "--dir", str(workdir)], os.environ)
    child.wait_for(lambda log: "Ready to accept connections" in log, 30)
    return f"redis://127.0.0.1:{port}/0"


def _child(stack: ExitStack, workdir: Path, name: str, argv: list[str], env: object) -> supervise.Child:
    child = supervise.start(name, argv, env, workdir / "logs")  # type: ignore[arg-type]
    stack.callback(child.stop)
    return child


def _generate(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        left = size
        while left:
            block = os.urandom(min(_BLOCK, left))
            handle.write(block)
            left -= len(block)


def _upload_token(api_url: str) -> str:
    answer = httpx.post(f"{api_url}/upload-tokens", json={"ttl": 3600}, auth=(DEMO_API_KEY, ""), timeout=30)
    answer.raise_for_status()
    return str(answer.json()["token"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _say(text: str) -> None:
    print(text, flush=True)
