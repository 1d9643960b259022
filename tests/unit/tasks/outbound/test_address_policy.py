"""tasks.outbound.address_policy (and the guarded transport's backend): the address policy, literal hosts in every
resolver form, enqueue-time URL checks.

Pure logic: no socket is opened here (the connect-time guard's resolver and
connector are fakes); tests/integration/test_guardedhttp.py uses real sockets.
"""

from __future__ import annotations

import ipaddress
import pickle
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.errors import PermanentError
from tasks.outbound.address_policy import (
    GLOBAL_SPECIAL_IPV4,
    GLOBAL_SPECIAL_IPV6,
    SPECIAL_IPV4,
    SPECIAL_IPV6,
    BlockedAddress,
    IPAddress,
    NetPolicy,
    check_url,
    embedded_ipv4,
    literal_address,
    parse_allowed_nets,
    refusal,
)
from tasks.outbound.guarded_transport import GuardedBackend, guarded_client

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
DEFAULT = NetPolicy()
LOOPBACK_ALLOWED = NetPolicy(parse_allowed_nets("127.0.0.0/8"))


def ipv4_forms(dotted: str) -> list[str]:
    """Every way a resolver (inet_aton rules) or a browser (WHATWG) spells this IPv4 address."""
    n = int(V4(dotted))
    a, b, c, d = V4(dotted).packed
    return [
        dotted,
        f"{dotted}.",  # trailing dot
        str(n),  # one decimal integer
        hex(n),  # one hex integer
        hex(n).upper().replace("0X", "0x"),
        f"0{n:o}",  # one octal integer
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",  # octal parts
        f"000{a:o}.0{b:o}.0{c:o}.0{d:o}",  # octal with extra leading zeros
        f"{a:#x}.{b:#x}.{c:#x}.{d:#x}",  # hex parts
        f"{a:#X}.{b:#x}.{c:#X}.{d:#x}",
        f"{a}.{b}.{(c << 8) | d}",  # three parts: the last fills two bytes
        f"{a}.{(b << 16) | (c << 8) | d}",  # two parts: the last fills three bytes
        f"{a:#x}.0{b:o}.{c}.{d:#x}",  # mixed
        f"0{a:o}.{(b << 16) | (c << 8) | d:#x}",  # mixed and short
        "".join(chr(ord(ch) + 0xFEE0) if ch.isdigit() else ch for ch in dotted),  # full-width digits
        dotted.replace(".", "\u3002"),  # ideographic full stops
        "".join(f"%{ord(ch):02x}" for ch in dotted),  # percent-encoded
        f"[::ffff:{dotted}]",  # IPv4-mapped IPv6
        f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]",
        f"[0:0:0:0:0:ffff:{dotted}]",
        f"[64:ff9b::{dotted}]",  # NAT64
        f"[2002:{(a << 8) | b:x}:{(c << 8) | d:x}::1]",  # 6to4
    ]


REFUSED_V4 = ["169.254.169.254", "127.0.0.1", "10.0.0.1", "0.0.0.0", "100.64.0.1"]
V4_FORMS = [(dotted, form) for dotted in REFUSED_V4 for form in ipv4_forms(dotted)]
REFUSED_V6 = [
    ("[::1]", "::1"),
    ("::1", "::1"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254"),
    ("[::FFFF:A9FE:A9FE]", "::ffff:169.254.169.254"),
    ("::ffff:169.254.169.254", "::ffff:169.254.169.254"),
    ("[fe80::1%eth0]", "fe80::1%eth0"),
    ("[fe80::1%25eth0]", "fe80::1%eth0"),  # the zone id as RFC 6874 writes it in a URL
    ("fe80::1%eth0", "fe80::1%eth0"),
    ("[fe80::1]", "fe80::1"),
    ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"),
    ("[64:ff9b::169.254.169.254]", "64:ff9b::a9fe:a9fe"),
    ("[::]", "::"),
]


# literal_address


@pytest.mark.parametrize(("dotted", "form"), V4_FORMS)
def test_every_ipv4_form_denotes_the_address(dotted: str, form: str) -> None:
    address = literal_address(form)
    assert address is not None, form
    assert (embedded_ipv4(address) or address) == V4(dotted)


@pytest.mark.parametrize(("form", "expected"), REFUSED_V6)
def test_ipv6_forms(form: str, expected: str) -> None:
    assert literal_address(form) == V6(expected)


@pytest.mark.parametrize(
    ("form", "expected"),
    [("127.1", "127.0.0.1"), ("10.1.2", "10.1.0.2"), ("10.1", "10.0.0.1"), ("0", "0.0.0.0"), ("0x", "0.0.0.0"),
     ("2852039166", "169.254.169.254"), ("0251.0376.0251.0376", "169.254.169.254"),
     ("0xa9fea9fe", "169.254.169.254"), ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
     ("4294967295", "255.255.255.255"), ("0xffffffff", "255.255.255.255"), ("037777777777", "255.255.255.255"),
     ("1.2.3.4.", "1.2.3.4"), ("0x00000000000000007f.1", "127.0.0.1")],
)
def test_short_and_based_forms(form: str, expected: str) -> None:
    assert literal_address(form) == V4(expected)


@pytest.mark.parametrize(
    "host",
    ["example.com", "localhost", "api.video", "127.0.0.1.nip.io", "1.2.3.4x", "1.2.3.4 x", " 1.2.3.4", "1.2.3.4\n",
     "256.1.1.1", "1.256.1.1", "1.2.3.256", "1.2.65536", "1.16777216", "4294967296", "0x100000000",
     "08.1.1.1", "09", "0x1g", "1..2", ".1.2.3", "1.2.3.4.5", "1.2.3.4..", "+1.2.3.4", "-1", "1_0.0.0.1",
     "١٢٧.0.0.1", "", "[]", "[zz::1]", "[1.2.3.4]", "::ffff:0x7f000001", "99999999999999999999"],
)
def test_not_a_literal(host: str) -> None:
    assert literal_address(host) is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_decimal_hex_octal_and_dotted_forms_agree(n: int) -> None:
    address = V4(n)
    a, b, c, d = address.packed
    forms = [str(n), hex(n), f"0{n:o}", str(address), f"{a:#x}.{b:#x}.{c:#x}.{d:#x}",
             f"0{a:o}.0{b:o}.0{c:o}.0{d:o}", f"{a}.{b}.{(c << 8) | d}", f"{a}.{(b << 16) | (c << 8) | d}"]
    for form in forms:
        assert literal_address(form) == address, form
        assert socket.inet_aton(form) == address.packed, form  # the libc's reading agrees


@given(st.integers(min_value=2**32, max_value=2**40))
def test_too_large_integers_are_not_addresses(n: int) -> None:
    for form in (str(n), hex(n), f"0{n:o}"):
        assert literal_address(form) is None, form


# NetPolicy


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"), ("::1", "loopback"), ("10.0.0.1", "private"), ("172.16.5.4", "private"),
        ("192.168.1.1", "private"), ("fd00::1", "private"), ("fc00::1", "private"), ("0.0.0.0", "unspecified"),
        ("::", "unspecified"), ("224.0.0.1", "multicast"), ("239.1.2.3", "multicast"), ("ff02::1", "multicast"),
        ("100.64.0.1", "shared address space"), ("100.127.255.254", "shared address space"),
        ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("fec0::1", "site-local"),
        ("0.1.2.3", "non-global"), ("192.0.2.1", "non-global"), ("198.18.0.1", "non-global"),
        ("2001:db8::1", "non-global"), ("64:ff9b:1::1", "non-global"),
        ("::ffff:169.254.169.254", "link-local"), ("::ffff:10.0.0.1", "private"), ("::ffff:0:7f00:1", "loopback"),
        ("::127.0.0.1", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"), ("64:ff9b::a00:1", "private"),
        ("2002:a9fe:a9fe::1", "link-local"), ("2002:7f00:1::", "loopback"), ("fe80::1%eth0", "link-local"),
    ],
)
def test_non_global_addresses_are_refused(address: str, kind: str) -> None:
    ip = ipaddress.ip_address(address)
    assert kind in (refusal(ip) or "")
    assert not DEFAULT.permits(ip)
    with pytest.raises(BlockedAddress, match=kind) as caught:
        DEFAULT.check(ip)
    assert caught.value.address == ip
    assert "VUQ_ALLOWED_PRIVATE_NETS" in str(caught.value)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "2606:4700:4700::1111", "::ffff:8.8.8.8",
     "64:ff9b::808:808", "2002:808:808::1"],
)
def test_global_addresses_pass(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal(ip) is None
    DEFAULT.check(ip)
    assert DEFAULT.permits(ip)


def test_the_message_names_the_address_and_the_setting() -> None:
    with pytest.raises(BlockedAddress) as caught:
        DEFAULT.check(V4("169.254.169.254"))
    assert str(caught.value).startswith(
        "169.254.169.254 is a link-local address; vuq refuses non-global addresses unless "
        "VUQ_ALLOWED_PRIVATE_NETS allows them")


def test_the_message_shows_how_a_host_was_written() -> None:
    with pytest.raises(BlockedAddress, match=r"^0xa9fea9fe \(169\.254\.169\.254\) is a link-local"):
        DEFAULT.check(V4("169.254.169.254"), label="0xa9fea9fe")
    with pytest.raises(BlockedAddress, match=r"IPv4 169\.254\.169\.254\) is a link-local"):
        DEFAULT.check(V6("::ffff:169.254.169.254"))


def test_blocked_address_is_permanent_and_survives_pickling() -> None:
    with pytest.raises(BlockedAddress) as caught:
        DEFAULT.check(V4("10.0.0.1"), label="internal")
    error = caught.value
    assert isinstance(error, PermanentError) and error.reason == "blocked_address"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is BlockedAddress and str(copy) == str(error) and copy.address == error.address


def test_allowed_networks_let_their_addresses_through_and_no_others() -> None:
    for address in ("127.0.0.1", "127.1.2.3", "::ffff:127.0.0.1", "64:ff9b::7f00:1"):
        LOOPBACK_ALLOWED.check(ipaddress.ip_address(address))
    for address in ("169.254.169.254", "::1", "10.0.0.1", "fe80::1"):
        with pytest.raises(BlockedAddress):
            LOOPBACK_ALLOWED.check(ipaddress.ip_address(address))


def test_allowed_ipv6_and_host_networks() -> None:
    policy = NetPolicy(parse_allowed_nets("fd00::/8, 10.1.2.3"))
    policy.check(V6("fd12::5"))
    policy.check(V4("10.1.2.3"))
    with pytest.raises(BlockedAddress):
        policy.check(V4("10.1.2.4"))
    with pytest.raises(BlockedAddress):
        policy.check(V6("fc00::1"))


# parse_allowed_nets


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", ()), (" , ", ()), ("127.0.0.0/8", ("127.0.0.0/8",)), ("127.0.0.0/8, fd00::/8,", ("127.0.0.0/8", "fd00::/8")),
     ("10.0.0.5", ("10.0.0.5/32",)), ("::1", ("::1/128",))],
)
def test_parse_allowed_nets(text: str, expected: tuple[str, ...]) -> None:
    assert parse_allowed_nets(text) == tuple(ipaddress.ip_network(n) for n in expected)


@pytest.mark.parametrize(
    ("text", "named"),
    [("bogus", "'bogus'"), ("10.0.0.0/8,nope", "'nope'"), ("10.0.0.0/33", "'10.0.0.0/33'"),
     ("10.1.2.3/8", "did you mean 10.0.0.0/8"), ("localhost", "'localhost'"), ("fe80::/10%eth0", "'fe80::/10%eth0'"),
     ("0x7f000001", "'0x7f000001'")],
)
def test_parse_allowed_nets_names_the_bad_entry(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="CIDR") as caught:
        parse_allowed_nets(text)
    assert named in str(caught.value)


# check_url


@pytest.mark.parametrize(("dotted", "form"), V4_FORMS)
def test_check_url_refuses_every_form_of_a_refused_ipv4_address(dotted: str, form: str) -> None:
    for url in (f"http://{form}/latest/meta-data/", f"https://user:pw@{form}:8443/x?token=abc"):
        with pytest.raises(BlockedAddress) as caught:
            check_url(url, DEFAULT)
        assert dotted in str(caught.value)


@pytest.mark.parametrize("form", [form for form, _ in REFUSED_V6 if form.startswith("[")])
def test_check_url_refuses_ipv6_literals(form: str) -> None:
    with pytest.raises(BlockedAddress):
        check_url(f"http://{form}:8080/", DEFAULT)


@pytest.mark.parametrize("url", ["ftp://example.com/video.mp4", "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO",
                                 "javascript:alert(1)", "example.com/video.mp4", "/srv/videos/a.mp4",
                                 "dict://127.0.0.1:11211/", "ws://example.com/"])
def test_check_url_refuses_other_schemes(url: str) -> None:
    with pytest.raises(ValueError, match="only http:// and https://"):
        check_url(url, DEFAULT)


def test_scheme_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ValueError) as caught:
        check_url("ftp://user:hunter2@example.com/v.mp4?token=s3cr3t", DEFAULT)
    assert "s3cr3t" not in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url", ["http:///video.mp4", "https://", "http://:8080/x", "http://user@/x", "http:video"])
def test_check_url_needs_a_host(url: str) -> None:
    with pytest.raises(ValueError, match="no host"):
        check_url(url, DEFAULT)


@pytest.mark.parametrize("url", ["http://localhost/", "http://LOCALHOST:8080/x", "http://localhost./",
                                 "http://videos.localhost/a.mp4", "https://a.b.localhost./"])
def test_check_url_refuses_localhost_names(url: str) -> None:
    with pytest.raises(BlockedAddress, match="loopback name"):
        check_url(url, DEFAULT)


@pytest.mark.parametrize("url", ["https://example.com/video.mp4", "http://videos.example.com:8443/a.mp4?sig=x",
                                 "https://Example.COM./v", "http://localhost.example.com/", "http://127.0.0.1.nip.io/",
                                 "https://bücher.example/v.mp4", "HTTPS://example.com/", "http://[2001:4860:4860::8888]/",
                                 "http://8.8.8.8/", "http://134744072/", "http://example.com@8.8.8.8/"])
def test_check_url_lets_host_names_and_global_addresses_through(url: str) -> None:
    check_url(url, DEFAULT)


def test_allowed_networks_apply_at_enqueue_too() -> None:
    for url in ("http://127.0.0.1:8000/a.mp4", "http://127.1/", "http://0x7f000001/", "http://localhost/",
                "http://[::ffff:127.0.0.1]/"):
        check_url(url, LOOPBACK_ALLOWED)
    for url in ("http://169.254.169.254/", "http://[::1]/"):
        with pytest.raises(BlockedAddress):
            check_url(url, LOOPBACK_ALLOWED)


def test_user_info_does_not_hide_the_host() -> None:
    with pytest.raises(BlockedAddress):
        check_url("http://example.com@169.254.169.254/", DEFAULT)
    check_url("http://169.254.169.254@example.com/", DEFAULT)  # the host is example.com


@pytest.mark.parametrize("url", ["http://1.2.3.4.5/", "http://example.0x1/", "http://08.0.0.1/", "http://1.2.3.256/",
                                 "http://127.0.0.1%20x/", "http://127.0.0.1%0a/", "http://[zz::1]/",
                                 "http://example.com:99999/"])
def test_check_url_refuses_malformed_hosts(url: str) -> None:
    with pytest.raises(ValueError):
        check_url(url, DEFAULT)


# GuardedBackend, with a fake resolver and a fake connector (no sockets)


class _Stream(httpcore.NetworkStream):
    def __init__(self, host: str) -> None:
        self.host = host


class _Connector(httpcore.NetworkBackend):
    """Records where it was asked to connect; the hosts in ``down`` refuse the connection."""

    def __init__(self, down: Iterable[str] = ()) -> None:
        self.calls: list[str] = []
        self.down = set(down)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        self.calls.append(host)
        if host in self.down:
            raise httpcore.ConnectError("[Errno 111] Connection refused")
        return _Stream(host)


def _resolver(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos: list[tuple[Any, ...]] = []
        for address in answers[host]:
            ip: IPAddress = ipaddress.ip_address(address)
            if ip.version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
            else:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
        return infos

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_backend_connects_by_ip_to_the_first_permitted_address(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _resolver(monkeypatch, {"mixed.test": ["169.254.169.254", "10.0.0.1", "8.8.8.8", "1.1.1.1"]})
    connector = _Connector()
    stream = GuardedBackend(DEFAULT, connector).connect_tcp("mixed.test", 443, timeout=5.0)
    assert isinstance(stream, _Stream) and stream.host == "8.8.8.8"
    assert connector.calls == ["8.8.8.8"] and asked == ["mixed.test"]


def test_backend_tries_the_next_permitted_address_when_one_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolver(monkeypatch, {"multi.test": ["2001:4860:4860::8888", "127.0.0.1", "8.8.8.8"]})
    connector = _Connector(down={"2001:4860:4860::8888"})
    stream = GuardedBackend(DEFAULT, connector).connect_tcp("multi.test", 80)
    assert isinstance(stream, _Stream) and stream.host == "8.8.8.8"
    assert connector.calls == ["2001:4860:4860::8888", "8.8.8.8"]


def test_backend_reports_the_last_connect_error_when_every_permitted_address_is_down(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _resolver(monkeypatch, {"down.test": ["8.8.8.8", "10.0.0.1"]})
    with pytest.raises(httpcore.ConnectError):
        GuardedBackend(DEFAULT, _Connector(down={"8.8.8.8"})).connect_tcp("down.test", 80)


def test_backend_refuses_a_name_that_resolves_only_to_refused_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolver(monkeypatch, {"rebind.test": ["127.0.0.1", "::1"]})
    connector = _Connector()
    with pytest.raises(BlockedAddress, match=r"^rebind\.test \(127\.0\.0\.1\) is a loopback address"):
        GuardedBackend(DEFAULT, connector).connect_tcp("rebind.test", 80)
    assert connector.calls == []
    stream = GuardedBackend(LOOPBACK_ALLOWED, connector).connect_tcp("rebind.test", 80)
    assert isinstance(stream, _Stream) and connector.calls == ["127.0.0.1"]


def test_backend_judges_literal_hosts_as_the_resolver_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolver(monkeypatch, {"2852039166": ["169.254.169.254"]})  # what glibc answers for a decimal host
    with pytest.raises(BlockedAddress, match="link-local"):
        GuardedBackend(DEFAULT, _Connector()).connect_tcp("2852039166", 80)


def test_backend_maps_a_resolution_failure_to_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolver(monkeypatch, {})
    with pytest.raises(httpcore.ConnectError, match=r"cannot resolve nxdomain\.test"):
        GuardedBackend(DEFAULT, _Connector()).connect_tcp("nxdomain.test", 80)


def test_backend_does_not_connect_over_unix_sockets() -> None:
    with pytest.raises(httpcore.UnsupportedProtocol):
        GuardedBackend(DEFAULT, _Connector()).connect_unix_socket("/var/run/docker.sock")


def test_guarded_client_raises_blocked_address_itself() -> None:
    """Not wrapped into an httpx error, so callers tell "refused" from "unreachable"; refused before connecting."""
    with guarded_client(DEFAULT, httpx.Timeout(1.0), httpx.Limits()) as client:
        assert client.follow_redirects is False and client.trust_env is False
        with pytest.raises(BlockedAddress):
            client.get("http://169.254.169.254/latest/meta-data/")
        with pytest.raises(BlockedAddress), client.stream("GET", "http://[::ffff:a9fe:a9fe]/"):
            pass


# The explicit special-purpose tables (IANA registries), the same on every Python version

# (an address in the block, what the refusal must say): the first, a middle and the last address of each
SPECIAL_CASES = [
    ("0.0.0.0", "unspecified"), ("0.0.0.1", '"this network"'), ("0.255.255.255", '"this network"'),
    ("10.0.0.0", "private"), ("10.255.255.255", "private"),
    ("100.64.0.0", "shared address space"), ("100.100.100.200", "shared address space"),
    ("100.127.255.255", "shared address space"),
    ("127.0.0.0", "loopback"), ("127.0.0.53", "loopback"), ("127.255.255.255", "loopback"),
    ("169.254.0.0", "link-local"), ("169.254.169.254", "link-local"), ("169.254.255.255", "link-local"),
    ("172.16.0.0", "private"), ("172.31.255.255", "private"),
    ("192.0.0.0", "ietf protocol assignments"), ("192.0.0.8", "ietf protocol assignments"),
    ("192.0.0.9", "ietf protocol assignments"), ("192.0.0.10", "ietf protocol assignments"),
    ("192.0.0.170", "ietf protocol assignments"), ("192.0.0.255", "ietf protocol assignments"),
    ("192.0.2.0", "test-net-1"), ("192.0.2.255", "test-net-1"),
    ("192.88.99.0", "6to4 relay anycast"), ("192.88.99.1", "6to4 relay anycast"),
    ("192.168.0.0", "private"), ("192.168.255.255", "private"),
    ("198.18.0.0", "benchmarking"), ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "test-net-2"), ("203.0.113.9", "test-net-3"),
    ("224.0.0.0", "multicast"), ("233.252.0.1", "multicast"), ("239.255.255.255", "multicast"),
    ("240.0.0.0", "reserved"), ("250.1.2.3", "reserved"), ("255.255.255.254", "reserved"),
    ("255.255.255.255", "limited broadcast"),
    ("::", "unspecified"), ("::1", "loopback"),
    ("64:ff9b:1::", "local-use ipv4/ipv6 translation"), ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "local-use"),
    ("100::", "discard-only"), ("100::ffff:ffff:ffff:ffff", "discard-only"),
    ("2001::", "ietf protocol assignments"), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "ietf protocol assignments"),
    ("2001:1::1", "ietf protocol assignments"), ("2001:2::1", "ietf protocol assignments"),
    ("2001:3::1", "ietf protocol assignments"), ("2001:4:112::1", "ietf protocol assignments"),
    ("2001:20::1", "ietf protocol assignments"), ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", "ietf protocol"),
    ("2001:db8::", "documentation"), ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"),
    ("3fff::", "documentation"), ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"),
    ("5f00::", "srv6"), ("5f00:ffff::1", "srv6"),
    ("fc00::", "unique local"), ("fd12:3456:789a::1", "unique local"),
    ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique local"),
    ("fe80::", "link-local"), ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"),
    ("fec0::", "site-local"), ("feff::1", "site-local"),
    ("ff00::", "multicast"), ("ff02::fb", "multicast"), ("ff0e::1", "multicast"),
    ("::2", '"this network"'), ("4000::1", "reserved"), ("1000::1", "reserved"), ("8000::1", "reserved"),
    ("e000::1", "reserved"), ("fe00::1", "reserved"),
]


@pytest.mark.parametrize(("address", "kind"), SPECIAL_CASES)
def test_every_special_purpose_block_is_refused_and_named(address: str, kind: str) -> None:
    ip = ipaddress.ip_address(address)
    assert kind in (refusal(ip) or "").lower(), refusal(ip)
    with pytest.raises(BlockedAddress):
        DEFAULT.check(ip)


@pytest.mark.parametrize("block", [*SPECIAL_IPV4, *SPECIAL_IPV6], ids=lambda b: str(b.network))
def test_each_block_of_the_tables_is_refused_from_end_to_end(block: Any) -> None:
    network = block.network
    middle = network.network_address + network.num_addresses // 2
    for ip in (network.network_address, network.broadcast_address, middle):
        assert refusal(ip) is not None, ip
        assert not DEFAULT.permits(ip)
    outside = network.broadcast_address + 1 if int(network.broadcast_address) < (1 << network.max_prefixlen) - 1 \
        else network.network_address - 1
    if not any(outside in b.network for b in (*SPECIAL_IPV4, *SPECIAL_IPV6)):
        assert refusal(outside) != block.kind  # the block ends where it says


@pytest.mark.parametrize("network", [*GLOBAL_SPECIAL_IPV4, *GLOBAL_SPECIAL_IPV6], ids=str)
def test_globally_reachable_registry_entries_outside_the_refused_blocks_pass(network: Any) -> None:
    assert refusal(network.network_address) is None
    assert refusal(network.network_address + 1) is None


@pytest.mark.parametrize("address", ["192.0.0.9", "192.0.0.10", "198.18.0.1", "100.64.0.1", "2001:db8::1",
                                     "64:ff9b:1::1", "fc00::1", "fe80::1", "224.0.0.1", "ff02::1", "0.0.0.0",
                                     "240.0.0.1", "255.255.255.255"])
def test_the_tables_not_pythons_flags_decide(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even an interpreter whose ipaddress calls everything global (3.11 does for 192.0.0.0/24) refuses them."""
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        for flag, value in (("is_global", True), ("is_private", False), ("is_reserved", False),
                            ("is_link_local", False), ("is_loopback", False), ("is_multicast", False),
                            ("is_unspecified", False), ("is_site_local", False)):
            if hasattr(cls, flag):
                monkeypatch.setattr(cls, flag, property(lambda self, v=value: v))
    assert refusal(ipaddress.ip_address(address)) is not None


def test_mapped_and_translated_forms_of_every_ipv4_block_are_refused() -> None:
    for block in SPECIAL_IPV4:
        v4 = block.network.network_address + 1 if block.network.num_addresses > 1 else block.network.network_address
        for form in (f"::ffff:{v4}", f"64:ff9b::{v4}", f"::ffff:0:{v4}"):
            assert refusal(ipaddress.ip_address(form)) == refusal(v4) is not None, form
        sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80))
        assert refusal(sixtofour) == refusal(v4), sixtofour


@given(st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_an_ipv4_address_is_refused_exactly_when_a_table_block_holds_it(n: int) -> None:
    ip = ipaddress.IPv4Address(n)
    assert (refusal(ip) is None) == (not any(ip in b.network for b in SPECIAL_IPV4))
