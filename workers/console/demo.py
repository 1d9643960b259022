"""`vuq demo` (and `make demo`): the whole system on this machine, end to end.

Redis (VUQ_BROKER_URL if it answers, else a private redis-server), the emulator, one
worker and Flower are started (``workers.lab.services``); a sample file is generated and
uploaded with a delegated token the demo creates; the finished video and the Flower URL
are printed; everything is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx

from emulator.extra import missing_message
from tasks.job import format_size, where
from tasks.settings import get_settings
from workers.console.progress import follow
from workers.lab.localstack import running_stack, sample_file
from workers.lab.services import RedisServer, ServiceError, redis_answers, start_flower
from workers.lab.supervise import free_port

DEMO_API_KEY = "demo-api-key"


class DemoError(Exception):
    """The demo cannot run here; the message says what to do."""


def run_demo(size: int, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="vuq-demo-"))
    try:
        with ExitStack() as stack:
            return _run(stack, workdir, size)
    except (DemoError, ServiceError) as exc:
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
    problem = missing_message()
    if problem:
        raise DemoError(problem)
    redis_url = _redis(stack, workdir)
    say(f"redis     {redis_url if redis_url.startswith('redis://127.0.0.1') else where(redis_url)}")
    system = stack.enter_context(running_stack(workdir, redis_url, workers=1, concurrency=2,
                                               api_key=DEMO_API_KEY, VUQ_ALLOWED_PRIVATE_NETS="127.0.0.0/8"))
    api_url = system.emulator.url
    say(f"emulator  {api_url}  (a local api.video; see README)")
    say(f"worker    ready (logs in {system.workers[0].log_path})")
    flower_port = free_port()
    flower = start_flower(system.env, system.log_dir, flower_port)
    stack.callback(flower.stop)
    flower_url = f"http://127.0.0.1:{flower_port}"
    say(f"flower    {flower_url}")

    sample = system.root / "sample-video.mp4"
    say(f"generating a {format_size(size)} sample video file…")
    sample_file(sample, size, seed=None)
    job_id = system.enqueue(sample, chunk_size="50MiB",
                            video={"title": "vuq demo", "description": "Uploaded by vuq demo",
                                   "tags": ["vuq", "demo"], "metadata": {"source": "make demo"}})
    say(f"enqueued  job {job_id}")
    job = follow(system.store, job_id, out=sys.stdout)
    if job.state != "done":
        raise DemoError(f"the job ended {job.state}: {job.error}")
    video = httpx.get(f"{api_url}/videos/{job.video_id}", headers=system.emulator.auth_header, timeout=30).json()
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
    if redis_answers(url):
        return url
    try:
        server = RedisServer(workdir / "redis").start()
    except ServiceError as exc:
        raise DemoError(f"no Redis answers at {where(url)} and {exc}; or set VUQ_BROKER_URL to a Redis "
                        "that answers") from None
    stack.callback(server.stop)
    return server.url


def _say(text: str) -> None:
    print(text, flush=True)
