"""The fault-injection infrastructure itself: hosts as network namespaces whose links a test cuts
(``tests.support.netns``), and a Redis Sentinel group that fails over (``tests.support.sentinel``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from tasks.job.connections import sentinel_nodes, url_password
from tests.support.netns import Host, Lab, skip_unless_lab
from tests.support.sentinel import start_sentinel_cluster
from tests.support.waiting import wait_for
from workers.lab.services import RedisServer

pytestmark = pytest.mark.integration

# Run inside a host: does a Redis answer PING, does an HTTP server answer GET (raw sockets: no proxy
# settings apply), each within half a second.
PROBE = r"""
import json, socket, sys

def exchange(host, port, request, answer):
    try:
        with socket.create_connection((host, int(port)), timeout=0.5) as sock:
            sock.settimeout(0.5)
            sock.sendall(request)
            return sock.recv(64).startswith(answer)
    except OSError:
        return False

redis_host, redis_port, http_host, http_port = sys.argv[1:5]
print(json.dumps({"redis": exchange(redis_host, redis_port, b"PING\r\n", b"+PONG"),
                  "http": exchange(http_host, http_port, b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1.0 200")}))
"""


def _need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs redis-server")
        pytest.skip("redis-server is not installed")


@pytest.fixture
def lab() -> Iterator[Lab]:
    skip_unless_lab()
    with Lab() as made:
        yield made


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def services(lab: Lab, tmp_path: Path) -> Iterator[tuple[RedisServer, int]]:
    """A Redis on the redis bridge's address and an HTTP server on the api bridge's: (redis, http port)."""
    _need_redis_server()
    server = RedisServer(tmp_path / "redis", host=lab.redis.address).start()
    http = ThreadingHTTPServer((lab.api.address, 0), _Ok)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield server, int(http.server_address[1])
    finally:
        http.shutdown()
        http.server_close()
        server.stop()


def _answers(host: Host, lab: Lab, services: tuple[RedisServer, int]) -> dict[str, bool]:
    server, http_port = services
    out = host.run([sys.executable, "-c", PROBE, lab.redis.address, str(server.port), lab.api.address,
                    str(http_port)]).stdout
    return dict(json.loads(out))


BOTH = {"redis": True, "http": True}


def test_a_host_reaches_each_service_over_its_own_link_and_a_cut_stops_only_that(
        lab: Lab, services: tuple[RedisServer, int]) -> None:
    w1, w2 = lab.host("w1"), lab.host("w2")
    assert _answers(w1, lab, services) == BOTH

    w1.cut("api")
    began = time.monotonic()
    assert _answers(w1, lab, services) == {"redis": True, "http": False}
    assert time.monotonic() - began < 5  # the connect fails or times out fast, it does not hang
    assert _answers(w2, lab, services) == BOTH  # a cut is one host's
    # The networks are not joined: a route to the api address over the redis link leads nowhere.
    w1.run(["ip", "route", "add", f"{lab.api.address}/32", "dev", "redis"])
    assert _answers(w1, lab, services) == {"redis": True, "http": False}
    w1.run(["ip", "route", "del", f"{lab.api.address}/32", "dev", "redis"])

    w1.heal("api")
    assert _answers(w1, lab, services) == BOTH  # at once: heal returns when frames flow again

    w1.cut("redis")
    assert _answers(w1, lab, services) == {"redis": False, "http": True}
    w1.heal()
    w1.cut("all")
    assert _answers(w1, lab, services) == {"redis": False, "http": False}
    w1.heal("all")
    assert _answers(w1, lab, services) == BOTH

    w2.vanish()
    assert _answers(w2, lab, services) == {"redis": False, "http": False}
    with pytest.raises(RuntimeError, match="vanished"):
        w2.heal()


def _lab_things() -> str:
    """Every namespace and interface name (to check a lab left none behind)."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return namespaces + links


def test_a_lab_removes_everything_on_exit_even_after_a_failure() -> None:
    skip_unless_lab()
    with pytest.raises(KeyError), Lab() as lab:
        host = lab.host("w1")
        sleeper = subprocess.Popen([*host.prefix, "sleep", "60"])  # still running when the lab goes
        wait_for(lambda: host.pids() == [sleeper.pid], 5, "the sleeper to enter the host")
        with Lab() as other:  # a second lab at the same time gets networks of its own
            assert other.redis.subnet != lab.redis.subnet and other.api.subnet != lab.api.subnet
            assert other.redis.device != lab.redis.device
        for bridge in (lab.redis, lab.api):  # hosts never need the root to forward between networks
            assert Path(f"/proc/sys/net/ipv4/conf/{bridge.device}/forwarding").read_text().strip() == "0"
        raise KeyError("a test failing inside the lab")
    assert sleeper.wait(5) == -signal.SIGKILL
    assert f"vuql{lab.id}" not in _lab_things() and f"vuql-{lab.id}-" not in _lab_things()
    assert f"vuql{other.id}" not in _lab_things()


def test_the_leftovers_of_a_killed_run_are_removed_by_the_next_lab(tmp_path: Path) -> None:
    skip_unless_lab()
    script = ("import sys, time\n"
              "from tests.support.netns import Lab\n"
              "lab = Lab().__enter__()\n"
              "lab.host('w1')\n"
              "print(lab.id, flush=True)\n"
              "time.sleep(60)\n")
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parents[2])
    try:
        assert run.stdout is not None
        killed_id = run.stdout.readline().strip()
        assert killed_id and f"vuql-{killed_id}-w1" in _lab_things()
    finally:
        run.kill()
        run.wait()
    with Lab() as lab:
        assert f"vuql{killed_id}" not in _lab_things() and f"vuql-{killed_id}-" not in _lab_things()
        assert lab.id != killed_id


def test_a_sentinel_group_fails_over_to_the_replica_and_keeps_a_replicated_write(tmp_path: Path) -> None:
    _need_redis_server()
    password = "sentinel-test-pw-7d1"
    with start_sentinel_cluster(tmp_path / "sentinel", "vuq-lab", password=password) as cluster:
        # The URL as Celery's transport and vuq read it: the sentinels, with the primary's password.
        assert sentinel_nodes(cluster.sentinel_url) == cluster.sentinel_addresses
        assert url_password(cluster.sentinel_url) == password
        assert cluster.master_address() == (cluster.primary.host, cluster.primary.port)
        sentinel = Sentinel(cluster.sentinel_addresses, sentinel_kwargs={"password": password, "socket_timeout": 1},
                            password=password, socket_timeout=1)
        primary = sentinel.master_for("vuq-lab")
        primary.set("survivor", "written before the kill")
        cluster.wait_for_replica_in_sync()

        cluster.kill_primary()
        began = time.monotonic()
        assert cluster.wait_for_failover(timeout_s=20) == (cluster.replica.host, cluster.replica.port)
        took = time.monotonic() - began
        assert cluster.master_address() == (cluster.replica.host, cluster.replica.port)
        assert primary.get("survivor") == b"written before the kill", f"failover took {took:.1f}s"
        primary.set("after", "the failover")  # the promoted replica takes writes
        with cluster.replica.client() as promoted:
            assert promoted.get("after") == b"the failover"
        host, port = cluster.sentinel_addresses[0]
        with pytest.raises(redis.AuthenticationError):  # the sentinels want their password
            redis.Redis(host, port, socket_timeout=1, retry=Retry(NoBackoff(), 0)).ping()
