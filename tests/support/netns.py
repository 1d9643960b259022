"""Several "hosts" on this machine: Linux network namespaces on two bridges, with links a test can cut.

::

    with Lab() as lab:                                   # two bridges in the root namespace
        redis = RedisServer(tmp / "redis", host=lab.redis.address).start()      # 10.231.N.1
        emu = start_emulator(tmp / "emu", key, tmp / "logs", host=lab.api.address)  # 10.232.N.1
        w1 = lab.host("w1")                              # a namespace with links "redis" and "api"
        start_worker(env, log_dir, prefix=w1.prefix)     # the worker runs inside w1
        w1.cut("api"); …; w1.heal("api")                 # a partition between w1 and the emulator
        w1.vanish()                                      # the host is gone for good

A host has a link to each bridge (a veth pair: ``redis`` and ``api`` inside the namespace, a port of
the bridge outside) and a route only to each link's /24, so it reaches services in the root namespace
that listen on ``lab.redis.address`` over its redis link only, and those on ``lab.api.address`` over
its api link only; nothing else (127.0.0.1 inside a host is its own loopback). No IP forwarding is
involved: the bridges refuse to forward between them and answer ARP only for their own address.
``cut`` sets the bridge side of a link down, which the host sees as a lost carrier: its packets (and
the root's replies) are dropped, established connections hang rather than reset, new connections
time out. ``heal`` brings it back and waits until frames flow again.

Everything a lab makes is named ``vuql<id>…`` (interfaces, at most 15 characters) or ``vuql-<id>-…``
(namespaces), with a random ``id`` per lab so parallel runs do not collide, and removed on exit,
also after a failure; leftovers of a killed run (whose owning process is gone) are removed when the
next lab starts. Needs root and iproute2: ``lab_available()`` says why not, ``skip_unless_lab()``
skips (fails under ``CI=true`` as root, since CI runs the lab).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from workers.lab.supervise import wait_until

PREFIX = "vuql"
Network = Literal["redis", "api"]
NETWORKS: tuple[Network, ...] = ("redis", "api")
Which = Literal["all", "redis", "api"]
# Lab number i uses 10.231.i.0/24 (redis) and 10.232.i.0/24 (api): the first i whose two /24s
# overlap no address and no route of the root namespace.
_BASES = {"redis": (10, 231), "api": (10, 232)}
_LOCK_PATH = Path("/run/lock/vuq-lab.lock") if Path("/run/lock").is_dir() else Path("/tmp/vuq-lab.lock")
_ID = re.compile(r"^vuql(?:-)?([0-9a-f]{6})")
_HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_OWNER = "vuq-lab owner="  # the alias of a lab's bridges: the pid and start time of the process that made it
_LINK_WAIT_S = 5.0
_IP_TIMEOUT_S = 20.0


class LabError(RuntimeError):
    """A command of the lab failed; the message has the command and what it printed."""


# -- availability ----------------------------------------------------------------------------------
@functools.cache
def lab_available() -> str | None:
    """None when this machine can make the lab's namespaces, bridges and veths; else why not."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [command for command in ("ip", "bridge") if shutil.which(command) is None]
    if missing:
        return f"no {' or '.join(f'`{c}`' for c in missing)} command (iproute2)"
    probe = f"{PREFIX}-{secrets.token_hex(3)}-probe"
    try:
        with _locked():
            _ip("netns", "add", probe)
            try:
                _ip("-n", probe, "link", "add", "vuqlbr", "type", "bridge")
                _ip("-n", probe, "link", "add", "vuqlv0", "type", "veth", "peer", "name", "vuqlv1")
                _ip("-n", probe, "link", "set", "vuqlv0", "master", "vuqlbr")
            finally:
                _ip("netns", "del", probe, check=False)
    except (LabError, OSError) as exc:
        return f"cannot make a network namespace with a bridge and a veth: {exc}"
    return None


def skip_unless_lab() -> None:
    """Skip the calling test without a lab here; under ``CI=true`` as root, fail instead."""
    import pytest

    reason = lab_available()
    if reason is None:
        return
    if os.environ.get("CI") == "true" and os.geteuid() == 0:
        pytest.fail(f"CI runs the network-namespace lab, but: {reason}")
    pytest.skip(reason)


# -- the lab ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bridge:
    """One network: a bridge in the root namespace; services listen on ``address``."""

    name: Network
    device: str
    subnet: ipaddress.IPv4Network
    address: str  # the root namespace's end: bind services here

    def host_address(self, index: int) -> str:
        return str(self.subnet.network_address + index + 2)


@dataclass
class Link:
    """A host's link to one network: ``root_device`` is the bridge port, ``device`` the host's end."""

    network: Network
    root_device: str
    device: str
    address: str


@dataclass
class Host:
    """A namespace with a link to each network; run commands in it with ``prefix``."""

    lab: Lab
    name: str
    ns: str
    index: int
    links: dict[str, Link] = field(default_factory=dict)
    vanished: bool = False

    @property
    def prefix(self) -> list[str]:
        """The argv prefix that runs a command inside this host."""
        return ["ip", "netns", "exec", self.ns]

    @property
    def redis_ip(self) -> str:
        return self.links["redis"].address

    @property
    def api_ip(self) -> str:
        return self.links["api"].address

    def run(self, argv: Sequence[str], timeout_s: float = 30.0, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host; output captured as text."""
        return subprocess.run([*self.prefix, *argv], capture_output=True, text=True, timeout=timeout_s,
                              check=check, input=input)

    def reaches(self, address: str, port: int, timeout_s: float = 0.5) -> bool:
        """Whether a TCP connection from inside the host to ``address:port`` opens within ``timeout_s``."""
        code = ("import socket, sys\n"
                "try:\n"
                f"    socket.create_connection(({address!r}, {port}), timeout={timeout_s}).close()\n"
                "except OSError:\n"
                "    sys.exit(1)\n")
        return self.run([sys.executable, "-c", code], timeout_s=timeout_s + 15, check=False).returncode == 0

    def cut(self, network: Which = "all") -> None:
        """Partition the host from ``network`` (or from both): its link loses carrier, frames drop."""
        links = self._links(network)
        for link in links:
            _ip("link", "set", link.root_device, "down")
        wait_until(lambda: not any(self._carrier(link) for link in links), _LINK_WAIT_S,
                   f"{self.name}'s {network} link(s) to lose carrier")

    def heal(self, network: Which = "all") -> None:
        """Bring the link(s) back; returns once frames flow both ways again."""
        if self.vanished:
            raise LabError(f"host {self.name} vanished; it does not come back")
        links = self._links(network)
        for link in links:
            _ip("link", "set", link.root_device, "up")
        wait_until(lambda: all(self._carrier(link) and self._forwarding(link) for link in links), _LINK_WAIT_S,
                   f"{self.name}'s {network} link(s) to come back")
        for link in links:
            # Neighbour entries that failed while cut would otherwise delay the first packets.
            _ip("-n", self.ns, "neigh", "flush", "dev", link.device, check=False)
            _ip("neigh", "flush", "to", link.address, "dev", self.lab.bridges[link.network].device, check=False)

    def vanish(self) -> None:
        """The host is gone for good: both links down, ``heal`` refuses."""
        self.cut("all")
        self.vanished = True

    def pids(self) -> list[int]:
        """The processes running inside this host."""
        out = _ip("netns", "pids", self.ns, check=False)
        return [int(pid) for pid in out.split()]

    def _links(self, network: Which) -> list[Link]:
        if network == "all":
            return list(self.links.values())
        if network not in self.links:
            raise ValueError(f"network must be 'all', 'redis' or 'api', not {network!r}")
        return [self.links[network]]

    def _carrier(self, link: Link) -> bool:
        state = _json(_ip("-n", self.ns, "-j", "link", "show", "dev", link.device))
        return bool(state) and "LOWER_UP" in state[0].get("flags", []) and state[0].get("operstate") == "UP"

    def _forwarding(self, link: Link) -> bool:
        ports = _json(_run(["bridge", "-j", "link", "show", "dev", link.root_device]))
        return bool(ports) and ports[0].get("state") == "forwarding"


class Lab:
    """Two bridges (``lab.redis``, ``lab.api``) and the hosts made with ``lab.host(name)``.

    A context manager: everything is removed on exit. Processes still running inside a host then
    are killed (stop your workers first to see their clean shutdown)."""

    def __init__(self) -> None:
        self.id = secrets.token_hex(3)
        self.bridges: dict[str, Bridge] = {}
        self.hosts: dict[str, Host] = {}
        self._anchor_ns = f"{PREFIX}-{self.id}--anchors"  # host names cannot start with "-"
        self._closed = False

    @property
    def redis(self) -> Bridge:
        return self.bridges["redis"]

    @property
    def api(self) -> Bridge:
        return self.bridges["api"]

    def __enter__(self) -> Lab:
        try:
            with _locked():
                clean_leftovers()
                number = _free_lab_number()
                _ip("netns", "add", self._anchor_ns)
                for network in NETWORKS:
                    self._make_bridge(network, number)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(raise_on_leftovers=exc is None)

    def host(self, name: str) -> Host:
        """A new namespace ``name`` with a link to each bridge (addresses .2, .3, … in the order made)."""
        if not _HOST_NAME.match(name):
            raise ValueError(f"host name must match {_HOST_NAME.pattern}, not {name!r}")
        if name in self.hosts:
            raise ValueError(f"there is already a host {name!r}")
        index = len(self.hosts)
        if index > 250:
            raise ValueError("a lab has at most 251 hosts")
        host = Host(self, name, f"{PREFIX}-{self.id}-{name}", index)
        self.hosts[name] = host
        _ip("netns", "add", host.ns)
        _ip("-n", host.ns, "link", "set", "lo", "up")
        for network in NETWORKS:
            bridge = self.bridges[network]
            link = Link(network=bridge.name, root_device=f"{PREFIX}{self.id}{network[0]}{index}", device=network,
                        address=bridge.host_address(index))
            _ip("link", "add", link.root_device, "type", "veth", "peer", "name", link.device, "netns", host.ns)
            host.links[network] = link
            _ip("link", "set", link.root_device, "master", bridge.device)
            _ip("-n", host.ns, "addr", "add", f"{link.address}/{bridge.subnet.prefixlen}", "dev", link.device)
            _ip("-n", host.ns, "link", "set", link.device, "up")
        host.heal()
        return host

    def close(self, raise_on_leftovers: bool = False) -> None:
        """Remove the hosts (killing what still runs in them) and the bridges; check nothing is left."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            _kill_inside(host.ns)
        _remove_lab(self.id)
        left = _leftovers_of(self.id)
        if left:
            message = f"the lab {self.id} left behind: {', '.join(left)}"
            if raise_on_leftovers:
                raise LabError(message)
            warnings.warn(message, stacklevel=2)

    def _make_bridge(self, network: Network, number: int) -> None:
        first, second = _BASES[network]
        subnet = ipaddress.IPv4Network(f"{first}.{second}.{number}.0/24")
        device = f"{PREFIX}{self.id}b{network[0]}"
        anchor = f"{PREFIX}{self.id}k{network[0]}"
        _ip("link", "add", "name", device, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        self.bridges[network] = bridge = Bridge(network, device, subnet, str(subnet.network_address + 1))
        _ip("link", "set", "dev", device, "alias", f"{_OWNER}{_owner(os.getpid())}")
        # An always-up port keeps the bridge's carrier on while every host link is cut: a bridge that lost
        # its carrier drops the root's packets for up to a second after a link comes back. It is a veth
        # (not every kernel has the dummy module) whose other end waits, without an address, in a
        # namespace of its own: an end in the root namespace would answer ARP for every root address
        # and so join the two networks.
        _ip("link", "add", "name", anchor, "type", "veth", "peer", "name", network, "netns", self._anchor_ns)
        _ip("link", "set", anchor, "master", device, "up")
        _ip("-n", self._anchor_ns, "link", "set", network, "up")
        for key, value in (("forwarding", "0"), ("arp_ignore", "1"), ("arp_announce", "2")):
            Path(f"/proc/sys/net/ipv4/conf/{device}/{key}").write_text(value)
        _ip("addr", "add", f"{bridge.address}/{subnet.prefixlen}", "dev", device)
        _ip("link", "set", device, "up")
        wait_until(lambda: _json(_ip("-j", "link", "show", "dev", device))[0].get("operstate") == "UP",
                   _LINK_WAIT_S, f"bridge {device} to come up")


# -- leftovers -------------------------------------------------------------------------------------
def clean_leftovers() -> list[str]:
    """Remove what labs of processes that no longer run left behind; returns the lab ids removed."""
    owners: dict[str, str] = {}
    ids: set[str] = set()
    for link in _json(_ip("-j", "-d", "link", "show")):
        match = _ID.match(link.get("ifname", ""))
        if match:
            ids.add(match.group(1))
            if link["ifname"][len(PREFIX) + 6:] in ("br", "ba") and link.get("ifalias", "").startswith(_OWNER):
                owners[match.group(1)] = link["ifalias"].removeprefix(_OWNER)
    for ns in _namespaces():
        match = _ID.match(ns)
        if match:
            ids.add(match.group(1))
    stale = sorted(lab_id for lab_id in ids if not _owner_alive(owners.get(lab_id)))
    for lab_id in stale:
        for ns in _namespaces():
            if ns.startswith(f"{PREFIX}-{lab_id}-"):
                _kill_inside(ns)
        _remove_lab(lab_id)
    return stale


def _remove_lab(lab_id: str) -> None:
    """Host links (which takes their peers inside the namespaces), namespaces, then the bridges."""
    links = [link["ifname"] for link in _json(_ip("-j", "link", "show"))
             if link.get("ifname", "").startswith(f"{PREFIX}{lab_id}")]
    bridges = [name for name in links if name[len(PREFIX) + 6] in "bk"]  # bridges and their anchors
    for name in links:
        if name not in bridges:
            _ip("link", "del", name, check=False)
    for ns in _namespaces():
        if ns.startswith(f"{PREFIX}-{lab_id}-"):
            _ip("netns", "del", ns, check=False)
    for name in bridges:
        _ip("link", "del", name, check=False)


def _leftovers_of(lab_id: str) -> list[str]:
    links = [link["ifname"] for link in _json(_ip("-j", "link", "show"))
             if link.get("ifname", "").startswith(f"{PREFIX}{lab_id}")]
    return links + [ns for ns in _namespaces() if ns.startswith(f"{PREFIX}-{lab_id}-")]


def _kill_inside(ns: str) -> None:
    out = _ip("netns", "pids", ns, check=False)
    pids = [int(pid) for pid in out.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        time.sleep(0.02)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _owner(pid: int) -> str:
    return f"{pid}:{_start_time(pid)}"


def _owner_alive(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return False
    pid, started = owner.split(":", 1)
    return pid.isdigit() and _start_time(int(pid)) == started


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (tells a reused pid apart); "" if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


# -- addresses -------------------------------------------------------------------------------------
def _free_lab_number() -> int:
    """The first i for which 10.231.i.0/24 and 10.232.i.0/24 overlap nothing the root namespace has."""
    used: list[ipaddress.IPv4Network] = []
    for iface in _json(_ip("-j", "-4", "addr", "show")):
        for addr in iface.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    for route in _json(_ip("-j", "-4", "route", "show", "table", "all")):
        dst = route.get("dst", "default")
        if dst != "default":
            used.append(ipaddress.IPv4Network(dst, strict=False))
    for number in range(256):
        wanted = [ipaddress.IPv4Network(f"{a}.{b}.{number}.0/24") for a, b in _BASES.values()]
        if not any(net.overlaps(other) for net in wanted for other in used):
            return number
    raise LabError("no free pair of 10.231.i.0/24 and 10.232.i.0/24 networks")


# -- commands --------------------------------------------------------------------------------------
def _ip(*args: str, check: bool = True) -> str:
    return _run(["ip", *args], check)


def _run(argv: list[str], check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=_IP_TIMEOUT_S)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def _json(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    return json.loads(text) if text else []


def _namespaces() -> list[str]:
    return [entry["name"] for entry in _json(_ip("-j", "netns", "list", check=False))]


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One lab at a time picks its networks and cleans leftovers (parallel runs, one machine)."""
    with open(_LOCK_PATH, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
