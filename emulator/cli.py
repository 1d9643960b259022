"""``python -m emulator``: serve the api.video emulator on a host and port.

The first line on stdout is ``listening on http://HOST:PORT`` (flushed), with
the real port when ``--port 0`` asked for a free one. Each API key, from
``--api-key KEY`` or ``--api-key-file FILE`` (both repeatable; files keep keys
off the command line), is an account of its own; a key that is missing, empty
or unreadable ends the program with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from emulator.app import create_app
from emulator.constants import DEFAULT_ACCESS_TOKEN_TTL_S
from emulator.faults import FaultSettings
from emulator.limits import DEFAULT_PROFILE, PROFILES
from emulator.protocol import EmulatorHttpProtocol
from emulator.state import EmulatorState

USAGE_ERROR_STATUS = 2
KEY_FLAG = "--api-key"
KEY_FILE_FLAG = "--api-key-file"
LISTEN_BACKLOG = 2048
KEEPALIVE = (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3))


def _latency(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low), float(high or low)


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags (also used by ``vuq emulator``)."""
    parser = argparse.ArgumentParser(prog="emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--api-key", dest="keys", action="append", default=[], type=_from_flag,
                        metavar="KEY", help="an account's API key; repeatable, one account per key")
    parser.add_argument("--api-key-file", dest="keys", action="append", type=_from_file, metavar="FILE",
                        help="read an account's API key from FILE (stripped); repeatable. Accounts "
                             "follow the order of both flags; the first is the default account")
    parser.add_argument("--access-token-ttl-s", type=int, default=DEFAULT_ACCESS_TOKEN_TTL_S)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--reset-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=_latency, default=(0.0, 0.0), metavar="MIN,MAX")
    parser.add_argument("--limits", choices=sorted(PROFILES), default=DEFAULT_PROFILE,
                        help="per-class requests per minute: generous (100,000 each), "
                             "production (upload 100, write 200, read 500), sandbox (40, 40, 100)")
    parser.add_argument("--rate-limit-per-minute", type=int, default=0,
                        help="overrides the upload limit of --limits (0: keep it)")
    parser.add_argument("--ingest-mib-per-s", type=float, default=0.0,
                        help="read each upload's body no faster than this (a link's rate; 0: as it comes)")
    parser.add_argument("--log-level", default="warning")
    return parser


class KeyFlagError(ValueError):
    """A key flag that gives no usable key; the message is the one line to show."""


@dataclass(frozen=True)
class KeySource:
    """One ``--api-key`` value or ``--api-key-file`` path, kept in command-line order."""

    flag: str
    value: str


def _from_flag(text: str) -> KeySource:
    return KeySource(KEY_FLAG, text)


def _from_file(text: str) -> KeySource:
    return KeySource(KEY_FILE_FLAG, text)


def _read_key(source: KeySource) -> str:
    if source.flag == KEY_FLAG:
        if not source.value.strip():
            raise KeyFlagError(f"{KEY_FLAG}: the key is empty")
        return source.value
    try:
        key = Path(source.value).read_text().strip()
    except FileNotFoundError:
        raise KeyFlagError(f"{KEY_FILE_FLAG} {source.value}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFlagError(f"{KEY_FILE_FLAG} {source.value}: cannot read it ({exc})") from None
    if not key:
        raise KeyFlagError(f"{KEY_FILE_FLAG} {source.value}: the file holds no key")
    return key


def api_keys(args: argparse.Namespace) -> list[str]:
    """The keys of ``--api-key`` and ``--api-key-file``, in the order given; raises KeyFlagError."""
    keys = [_read_key(source) for source in args.keys]
    if not keys:
        raise KeyFlagError(f"an API key is required: give {KEY_FLAG} KEY or {KEY_FILE_FLAG} FILE")
    return keys


def _faults(args: argparse.Namespace) -> FaultSettings:
    settings = FaultSettings(seed=args.seed, error_rate=args.error_rate,
                             reset_rate=args.reset_rate, latency_ms=args.latency_ms,
                             rate_limit_per_minute=args.rate_limit_per_minute,
                             limits=PROFILES[args.limits], ingest_mib_per_s=args.ingest_mib_per_s)
    settings.validate()
    return settings


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket. Accepted connections inherit its TCP keepalive, so a client that
    vanished mid-body (its host gone, no FIN) is dropped after about 11 s of silence and the
    byte range it had reserved is released, as a real server's timeouts would."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE:
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until interrupted; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        keys = api_keys(args)
    except KeyFlagError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    try:
        faults = _faults(args)
    except ValueError as exc:
        parser.error(str(exc))
    args.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        state = EmulatorState.open(args.data_dir, keys, args.access_token_ttl_s, faults)
    except ValueError as exc:  # two keys whose account ids collide
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        create_app(state), http=EmulatorHttpProtocol, loop="auto", lifespan="off",
        log_level=args.log_level, access_log=False, h11_max_incomplete_event_size=None,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    print(f"listening on http://{shown}:{port}", flush=True)
    logging.getLogger("emulator").info("data dir %s", args.data_dir)
    server.run(sockets=[sock])
    return 0
