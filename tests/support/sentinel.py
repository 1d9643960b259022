"""Redis Sentinel on this machine: a primary, its replica and sentinels that fail over to the replica
when the primary dies. For the tests of vuq over Sentinel and for trying it out::

    with start_sentinel_cluster(tmp / "sentinel", "vuq-primary", password="s3cret") as cluster:
        env = worker_env(cluster.sentinel_url, api_url, api_key, roots, queue, **cluster.vuq_env())
        …
        cluster.kill_primary()                 # SIGKILL
        cluster.wait_for_failover()            # the sentinels now name the replica

``sentinel_url`` lists the sentinels as Celery's Redis transport (kombu) and vuq take them:
``sentinel://:PASSWORD@host:port1;sentinel://:PASSWORD@host:port2;…``. The password in that URL is
the *primary's*: kombu gives it to the Redis connections it opens to whatever server the sentinels
name, never to the sentinels. A sentinel's own password (``requirepass``) reaches kombu only through
the transport option ``sentinel_kwargs={"password": …}``, which vuq fills from
``VUQ_SENTINEL_PASSWORD`` (``vuq_env()``). Here the sentinels require the same password as the Redis
servers, unless ``sentinel_auth=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.lab.services import RedisProcess, RedisServer, ServiceError, redis_server_binary
from workers.lab.supervise import Child, wait_until

_PROBE_TIMEOUT_S = 1.0
# The helpers' own probes: short timeouts and no retries (redis-py retries even a refused password,
# with backoff, for seconds by default).
_PROBE: dict[str, Any] = {"socket_timeout": _PROBE_TIMEOUT_S, "socket_connect_timeout": _PROBE_TIMEOUT_S,
                          "retry": Retry(NoBackoff(), 0)}
# A replica that may become the primary must not wait 5 s (Redis 7's default) before a full sync.
_FAST_SYNC = ("--repl-diskless-sync-delay", "0")


def _quote(value: str) -> str:
    """A value for a redis.conf line (double quotes, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class SentinelServer(RedisProcess):
    """``redis-server --sentinel`` on a free port of ``host``, watching the primary at ``monitor``;
    its config file (written at start, rewritten by the sentinel itself) lives in ``data_dir``."""

    data_dir: Path
    master_name: str
    monitor: tuple[str, int]
    host: str = "127.0.0.1"
    port: int = 0
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    parallel_syncs: int = 1
    master_password: str | None = field(default=None, repr=False)  # the Redis servers' (auth-pass)
    password: str | None = field(default=None, repr=False)  # the sentinel's own (requirepass)
    prefix: tuple[str, ...] = ()
    child: Child | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def config_path(self) -> Path:
        return self.data_dir / "sentinel.conf"

    def config(self) -> str:
        name = self.master_name
        lines = [f"bind {self.host}", f"port {self.port}", f"dir {_quote(str(self.data_dir))}", "protected-mode no",
                 'logfile ""', "daemonize no",
                 f"sentinel monitor {name} {self.monitor[0]} {self.monitor[1]} {self.quorum}",
                 f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                 f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                 f"sentinel parallel-syncs {name} {self.parallel_syncs}"]
        if self.master_password:
            lines.append(f"sentinel auth-pass {name} {_quote(self.master_password)}")
        if self.password:  # sentinels with the same requirepass also use it with each other
            lines.append(f"requirepass {_quote(self.password)}")
        return "\n".join(lines) + "\n"

    def argv(self) -> list[str]:
        return [*self.prefix, redis_server_binary(), str(self.config_path), "--sentinel"]

    def start(self) -> SentinelServer:
        argv = self.argv()
        self.config_path.write_text(self.config())
        self.config_path.chmod(0o600)  # it holds passwords
        self._launch(f"sentinel-{self.port}", argv, self.client(), f"redis sentinel on port {self.port}")
        return self

    def client(self) -> redis.Redis:
        """A client of this sentinel (decoded replies, short timeouts)."""
        return redis.Redis(host=self.host, port=self.port, password=self.password, decode_responses=True,
                           **_PROBE)

    def master(self) -> dict[str, str]:
        """``SENTINEL MASTER name``: what this sentinel knows of the primary (flags, num-slaves, …)."""
        with self.client() as client:
            reply = client.execute_command("SENTINEL", "MASTER", self.master_name)
        pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)  # RESP3, 2
        return {str(key): str(value) for key, value in pairs}

    def master_address(self) -> tuple[str, int] | None:
        """``SENTINEL get-master-addr-by-name``: where this sentinel says the primary is."""
        with self.client() as client:
            reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return (reply[0], int(reply[1])) if reply else None


@dataclass
class SentinelCluster:
    """A primary, one replica and the sentinels watching them (``start_sentinel_cluster``)."""

    master_name: str
    primary: RedisServer
    replica: RedisServer
    sentinels: list[SentinelServer]
    password: str | None = field(default=None, repr=False)  # the Redis servers'
    sentinel_password: str | None = field(default=None, repr=False)  # the sentinels' own

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [sentinel.address for sentinel in self.sentinels]

    @property
    def sentinel_url(self) -> str:
        """The sentinels as kombu and vuq take them; the password in it is the primary's."""
        auth = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{auth}{host}:{port}" for host, port in self.sentinel_addresses)

    def vuq_env(self) -> dict[str, str]:
        """The settings a vuq process needs besides ``VUQ_BROKER_URL=sentinel_url``."""
        env = {"VUQ_SENTINEL_MASTER": self.master_name}
        if self.sentinel_password:
            env["VUQ_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the primary is (the first sentinel that answers)."""
        failures = []
        for sentinel in self.sentinels:
            try:
                address = sentinel.master_address()
            except redis.RedisError as exc:
                failures.append(f"{sentinel.host}:{sentinel.port}: {exc}")
                continue
            if address:
                return address
        raise ServiceError(f"no sentinel names the primary {self.master_name!r}: {'; '.join(failures)}")

    def wait_until_watched(self, timeout_s: float = 20.0) -> None:
        """Until every sentinel knows the others and the replica, and sees the primary up: only then
        can they agree on a failover (a sentinel that knows no other would elect itself)."""
        others = str(len(self.sentinels) - 1)

        def watched() -> bool:
            try:
                views = [sentinel.master() for sentinel in self.sentinels]
            except redis.RedisError:
                return False
            return all(view.get("flags") == "master" and view.get("num-other-sentinels") == others
                       and view.get("num-slaves") == "1" for view in views)

        wait_until(watched, timeout_s, f"the sentinels to watch {self.master_name!r} together")

    def wait_for_replica_in_sync(self, timeout_s: float = 10.0) -> None:
        """Until the replica is linked to the primary and has everything the primary had written when
        this was called."""
        with self.primary.client(decode_responses=True) as primary, self.replica.client(decode_responses=True) as rep:
            target = int(primary.info("replication")["master_repl_offset"])

            def in_sync() -> bool:
                info = rep.info("replication")
                return info.get("master_link_status") == "up" and int(info.get("slave_repl_offset", -1)) >= target

            wait_until(in_sync, timeout_s, f"the replica on port {self.replica.port} to catch up")

    def kill_primary(self) -> None:
        """SIGKILL the primary: no goodbye to its replica or the sentinels."""
        self.primary.kill()

    def wait_for_failover(self, timeout_s: float = 30.0) -> tuple[str, int]:
        """Until every live sentinel names the replica as the primary and the replica says it is one."""
        wanted = (self.replica.host, self.replica.port)

        def promoted() -> bool:
            try:
                views = [sentinel.master_address() for sentinel in self.sentinels if sentinel.alive]
                with self.replica.client(decode_responses=True, **_PROBE) as replica:
                    role = replica.info("replication").get("role")
            except redis.RedisError:
                return False
            return bool(views) and all(view == wanted for view in views) and role == "master"

        wait_until(promoted, timeout_s, f"the sentinels to promote the replica on port {self.replica.port}")
        return wanted

    def stop(self) -> None:
        """The sentinels first (no failover while the servers go), then the replica and the primary."""
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.primary.stop()

    def __enter__(self) -> SentinelCluster:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_sentinel_cluster(data_dir: Path, master_name: str, password: str | None = None, host: str = "127.0.0.1",
                           sentinels: int = 3, down_after_ms: int = 1000, failover_timeout_ms: int = 5000,
                           sentinel_auth: bool = True) -> SentinelCluster:
    """A primary and a replica (``password``: both require it) on ``host``, the replica in sync, and
    ``sentinels`` sentinels (quorum: a majority) that know each other and the replica. With a
    password the sentinels require it too, unless ``sentinel_auth`` is False. Stopped on failure."""
    sentinel_password = password if sentinel_auth else None
    primary = RedisServer(data_dir / "primary", host=host, password=password, extra_args=_FAST_SYNC)
    replica = RedisServer(data_dir / "replica", host=host, password=password, extra_args=_FAST_SYNC,
                          replica_of=(host, primary.port))
    watchers = [SentinelServer(data_dir / f"sentinel-{i}", master_name, (host, primary.port), host=host,
                               quorum=sentinels // 2 + 1, down_after_ms=down_after_ms,
                               failover_timeout_ms=failover_timeout_ms, master_password=password,
                               password=sentinel_password) for i in range(sentinels)]
    cluster = SentinelCluster(master_name, primary, replica, watchers, password, sentinel_password)
    try:
        primary.start()
        replica.start()
        cluster.wait_for_replica_in_sync()
        for sentinel in watchers:
            sentinel.start()
        cluster.wait_until_watched()
    except BaseException:
        cluster.stop()
        raise
    return cluster
