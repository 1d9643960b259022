"""The ``vuq`` command line: enqueue and follow jobs, operate them, start the processes.

Every failure ends in one line on stderr (``workers.console.endings``): exit status 2 for
configuration and usage, 1 when the work could not be done; ``vuq --debug …`` shows the
traceback instead. ``worker``, ``flower`` and ``beat`` hand their options to Celery or Flower.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from tasks.errors import ConfigError, SpecError
from tasks.job import PRIORITIES, parse_size
from tasks.settings import Settings, get_settings
from workers.console import commands
from workers.console import endings as clierrors
from workers.console import launch as processes
from workers.console.endings import UsageError

PASSTHROUGH = ("worker", "flower", "beat", "emulator")
HELP_FLAGS = ("-h", "--help")


Command = Callable[[str, str], argparse.ArgumentParser]  # adds a subcommand: name, help text


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an unexpected error")
    parser = argparse.ArgumentParser(prog="vuq", parents=[common],
                                     description="Upload large videos to api.video through Celery workers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, parents=[common])

    _enqueue_command(command)
    _job_commands(command)
    _process_commands(command)
    return parser


def _enqueue_command(command: Command) -> None:
    enq = command("enqueue", "enqueue an upload job and print its id")
    enq.add_argument("source", nargs="?", help="a path or file:// URL under VUQ_ALLOWED_ROOTS, or an http(s):// URL")
    enq.add_argument("--from", dest="from_file", metavar="FILE.jsonl",
                     help="enqueue one job spec (JSON) per line of FILE ('-': standard input) instead; prints one "
                          "job id per line, in order (an empty line where a line is refused)")
    enq.add_argument("--account", help="the api.video account to upload into (default: the one that owns the "
                                       "token, else 'default')")
    enq.add_argument("--tenant", help="whose share of the account's budget the job takes (default: the account)")
    enq.add_argument("--priority", choices=PRIORITIES, help="interactive (default) or bulk: bulk jobs take only "
                                                           "the budget no interactive job waits for")
    enq.add_argument("--token", help="the delegated upload token (shows in `ps`; prefer --token-file or "
                                     "VUQ_UPLOAD_TOKEN; not needed when the workers hold an API key)")
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
    enq.add_argument("--job-id", help="idempotency key: the same id with the same spec makes one job")
    enq.add_argument("--callback-url", help="POSTed the final job record, signed, when the job ends")
    enq.add_argument("--live", action="store_true",
                     help="the file is still being written: upload it as it grows, until `vuq finish JOB` (it "
                          "may not exist yet; a job whose file neither grows nor is finished for "
                          "VUQ_LIVE_IDLE_TIMEOUT_S fails, resumable)")
    enq.add_argument("--finish-when-idle", type=_positive, metavar="SECONDS", dest="finish_when_idle_s",
                     help="with --live: the job finishes by itself once its file has not grown for this long")
    enq.add_argument("--no-source-check", action="store_true",
                     help="do not check a local source here (only the workers mount it)")
    enq.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")
    enq.add_argument("--json", action="store_true",
                     help="print the job as JSON (with --wait: the finished job)")


def _job_commands(command: Command) -> None:
    status = command("status", "show one job")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true")

    jobs = command("jobs", "list jobs, newest first, a page at a time")
    jobs.add_argument("--state", action="append", choices=commands.STATES, help="filter (repeatable)")
    jobs.add_argument("--limit", type=_positive, default=50, help="jobs per page (default 50)")
    jobs.add_argument("--before", metavar="JOB_ID", help="the page after this job (the last one shown)")
    jobs.add_argument("--account", help="only jobs of this account")
    jobs.add_argument("--tenant", help="only jobs of this tenant")
    jobs.add_argument("--json", action="store_true", help="JSON (times: seconds since the epoch, Redis's clock)")

    watch = command("watch", "progress bar until the job ends")
    watch.add_argument("job_id")
    watch.add_argument("--json", action="store_true", help="print the finished job as JSON")

    resume = command("resume", "continue a failed job from its last acknowledged chunk")
    resume.add_argument("job_id")
    resume.add_argument("--token", help="a new upload token (shows in `ps`; prefer --token-file)")
    resume.add_argument("--token-file", help="read the new upload token from this file")
    finish = command("finish", "end a live job: its file is complete; the last part goes now")
    finish.add_argument("job_id")
    finish.add_argument("--size", type=_size, help="the file's final size in bytes (default: its size as the "
                                                  "workers see it now)")
    cancel = command("cancel", "stop a queued or uploading job at its next chunk")
    cancel.add_argument("job_id")
    cancel.add_argument("--keep-video", action="store_true",
                        help="keep the partial video vuq created (by default a worker with the API key deletes it)")
    webhook = command("webhook", "deliver an ended job's completion webhook again (signed anew)")
    webhook.add_argument("job_id")
    retry = command("retry-failed", "resume every failed job whose error may be transient")
    retry.add_argument("--all", action="store_true", help="resume every failed job")


def _process_commands(command: Command) -> None:
    health = command("health", "exit 0 if this host's workers reach Redis and consume, else 1 with the reason")
    health.add_argument("--idle-s", type=_positive, help="idle with messages waiting this long fails "
                                                          "(default VUQ_HEALTH_IDLE_S, 120)")
    health.add_argument("--node", help="check only this worker (celery@HOST): default every worker here")

    for name in PASSTHROUGH:
        proc = command(name, processes.SUMMARY[name])
        proc.add_argument("options", nargs=argparse.REMAINDER, help=processes.OPTIONS_HELP[name])
    demo = command("demo", "the whole system on this machine, end to end")
    demo.add_argument("--size", type=_size, default=parse_size("300MiB"))
    demo.add_argument("--keep", action="store_true", help="keep the demo's files")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
    if at < len(argv) and argv[at] in PASSTHROUGH:
        # everything after the command belongs to Celery, Flower or the emulator
        args = argparse.Namespace(command=argv[at], options=argv[at + 1:], debug="--debug" in argv[:at])
        if args.options[:1] and args.options[0] in HELP_FLAGS:
            parser.parse_args([argv[at], "--help"])  # vuq's own help for the command; exits 0
    else:
        args = parser.parse_args(argv)
        args.debug = getattr(args, "debug", False)  # a shared --debug action: no default to overwrite
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        status, line = clierrors.ending(exc, _settings_or_none())
        print(f"vuq {args.command}: {line}", file=sys.stderr)
        return status


def _settings_or_none() -> Settings | None:
    try:
        return get_settings()
    except ConfigError:
        return None


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("worker", "flower", "beat"):
        return processes.celery_command(args.command, args.options)
    if args.command == "emulator":
        return processes.emulator_command(args.options)
    if args.command == "demo":
        from workers.console.demo import run_demo

        return run_demo(size=args.size, keep=args.keep)
    if args.command == "health":
        return commands.health(args.idle_s, args.node)
    if args.command == "enqueue":
        if args.from_file:
            return commands.enqueue_from(args.from_file, _line_defaults(args), check_source=not args.no_source_check)
        if not args.source:
            raise UsageError("enqueue needs a SOURCE, or --from FILE.jsonl")
        return commands.enqueue(_spec(args), wait=args.wait, as_json=args.json,
                                check_source=not args.no_source_check)
    handlers: dict[str, Any] = {
        "status": lambda: commands.status(args.job_id, args.json),
        "jobs": lambda: commands.jobs(args.state, args.limit, args.before, args.json, args.account, args.tenant),
        "watch": lambda: commands.watch(args.job_id, args.json),
        "resume": lambda: commands.resume(args.job_id, _token(args, env=False)),
        "cancel": lambda: commands.cancel(args.job_id, args.keep_video),
        "finish": lambda: commands.finish(args.job_id, args.size),
        "retry-failed": lambda: commands.retry_failed(args.all),
        "webhook": lambda: commands.webhook(args.job_id),
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
            "chunk_size": args.chunk_size, "job_id": args.job_id, "callback_url": args.callback_url,
            "account": args.account, "tenant": args.tenant, "priority": args.priority,
            "live": args.live or None, "finish_when_idle_s": args.finish_when_idle_s}


def _line_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """What ``--from``'s lines take from the command line when they do not say: account, tenant, priority,
    the token (``--token-file``, ``VUQ_UPLOAD_TOKEN``)."""
    given = [name for name in ("title", "description", "player_id", "chunk_size", "job_id", "callback_url",
                               "public", "panoramic", "mp4_support", "finish_when_idle_s")
             if getattr(args, name) is not None]
    if args.live:
        given.append("live")
    if given or args.tag or args.metadata or args.wait:
        shown = given[0] if given else ("tag" if args.tag else "metadata" if args.metadata else "wait")
        raise UsageError(f"--from takes each job's spec from its line: --{shown.replace('_', '-')} is not for it")
    defaults = {"account": args.account, "tenant": args.tenant, "priority": args.priority, "token": _token(args)}
    return {name: value for name, value in defaults.items() if value is not None}


def _pair(item: str) -> dict[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SpecError("video.metadata", f"--metadata takes KEY=VALUE, not {item!r}")
    return {"key": key, "value": value}


def _token(args: argparse.Namespace, env: bool = True) -> str | None:
    given = [name for name, value in (("--token", args.token), ("--token-file", args.token_file)) if value]
    if len(given) > 1:
        raise SpecError("token", "give --token or --token-file, not both")
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise SpecError("token", f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
        if not token:
            raise SpecError("token", f"--token-file {args.token_file} is empty")
        return token
    return args.token or (os.environ.get("VUQ_UPLOAD_TOKEN", "").strip() if env else "") or None


def _absolute(source: str) -> str:
    """A relative path on the command line means the caller's directory."""
    if "://" in source or os.path.isabs(source):
        return source
    return os.path.abspath(source)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    raise SystemExit(main())
