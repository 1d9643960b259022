"""The ``vuq`` command line: enqueue and follow jobs, operate them, start the processes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from tasks.errors import ConfigError, EnqueueError, SpecError
from tasks.sizes import parse_size
from workers import commands, processes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vuq", description="Upload large videos to api.video through Celery.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enq = sub.add_parser("enqueue", help="enqueue an upload job and print its id")
    enq.add_argument("source", help="a path or file:// URL under VUQ_ALLOWED_ROOTS, or an http(s):// URL")
    enq.add_argument("--token", help="the delegated upload token (or --token-file)")
    enq.add_argument("--token-file", help="read the upload token from this file")
    enq.add_argument("--title")
    enq.add_argument("--description")
    enq.add_argument("--tag", action="append", default=[], help="a tag (repeat for more)")
    enq.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeat for more")
    enq.add_argument("--public", action=argparse.BooleanOptionalAction, default=None)
    enq.add_argument("--panoramic", action=argparse.BooleanOptionalAction, default=None)
    enq.add_argument("--mp4-support", action=argparse.BooleanOptionalAction, default=None)
    enq.add_argument("--player-id")
    enq.add_argument("--chunk-size", type=_size, help="bytes, or 5MiB..128MiB (default VUQ_CHUNK_SIZE)")
    enq.add_argument("--job-id", help="idempotency key: the same id enqueued twice makes one job")
    enq.add_argument("--callback-url", help="POSTed the final job record, signed, when the job ends")
    enq.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")
    enq.add_argument("--json", action="store_true", help="with --wait: print the finished job as JSON")

    status = sub.add_parser("status", help="show one job")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true")

    jobs = sub.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--state", action="append", choices=commands.STATES, help="filter (repeatable)")
    jobs.add_argument("--limit", type=int, default=100)
    jobs.add_argument("--json", action="store_true")

    watch = sub.add_parser("watch", help="progress bar until the job ends")
    watch.add_argument("job_id")
    watch.add_argument("--json", action="store_true", help="print the finished job as JSON")

    for name, text in (("resume", "continue a failed job from its last acknowledged chunk"),
                       ("cancel", "stop a queued or uploading job at its next chunk")):
        sub.add_parser(name, help=text).add_argument("job_id")
    retry = sub.add_parser("retry-failed", help="resume every failed job whose error may be transient")
    retry.add_argument("--all", action="store_true", help="resume every failed job")

    for name, text in (("worker", "start a Celery worker (Celery's worker options pass through)"),
                       ("flower", "start Flower (its options pass through)"),
                       ("beat", "start Celery beat, which runs the janitor"),
                       ("emulator", "start the local api.video emulator")):
        proc = sub.add_parser(name, help=text, add_help=False)
        proc.add_argument("args", nargs=argparse.REMAINDER)
    demo = sub.add_parser("demo", help="the whole system on this machine, end to end")
    demo.add_argument("--size", type=_size, default=parse_size("300MiB"))
    demo.add_argument("--keep", action="store_true", help="keep the demo's files")
    return parser


PASSTHROUGH = ("worker", "flower", "beat", "emulator")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH and not {"-h", "--help"} & set(argv[1:2]):
        # everything after the command belongs to Celery, Flower or the emulator
        args = argparse.Namespace(command=argv[0], args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (SpecError, ConfigError, EnqueueError, commands.CommandError) as exc:
        print(f"vuq {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("worker", "flower", "beat"):
        return processes.celery_command(args.command, args.args)
    if args.command == "emulator":
        from emulator.cli import main as emulator_main

        return emulator_main(args.args)
    if args.command == "demo":
        from workers.demo import run_demo

        return run_demo(size=args.size, keep=args.keep)
    if args.command == "enqueue":
        return commands.enqueue(_spec(args), wait=args.wait, as_json=args.json)
    handlers: dict[str, Any] = {
        "status": lambda: commands.status(args.job_id, args.json),
        "jobs": lambda: commands.jobs(args.state, args.limit, args.json),
        "watch": lambda: commands.watch(args.job_id, args.json),
        "resume": lambda: commands.resume(args.job_id),
        "cancel": lambda: commands.cancel(args.job_id),
        "retry-failed": lambda: commands.retry_failed(args.all),
    }
    return int(handlers[args.command]())


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    video: dict[str, Any] = {"title": args.title, "description": args.description, "playerId": args.player_id,
                             "public": args.public, "panoramic": args.panoramic, "mp4Support": args.mp4_support}
    video = {k: v for k, v in video.items() if v is not None}
    if args.tag:
        video["tags"] = args.tag
    if args.metadata:
        video["metadata"] = [_pair(item) for item in args.metadata]
    return {"source": _absolute(args.source), "token": _token(args), "video": video,
            "chunk_size": args.chunk_size, "job_id": args.job_id, "callback_url": args.callback_url}


def _pair(item: str) -> dict[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SpecError("video.metadata", f"--metadata takes KEY=VALUE, not {item!r}")
    return {"key": key, "value": value}


def _token(args: argparse.Namespace) -> str | None:
    if args.token and args.token_file:
        raise SpecError("token", "give --token or --token-file, not both")
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as handle:
            return handle.read().strip()
    return args.token


def _absolute(source: str) -> str:
    """A relative path on the command line means the caller's directory."""
    if "://" in source or os.path.isabs(source):
        return source
    return os.path.abspath(source)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    raise SystemExit(main())
