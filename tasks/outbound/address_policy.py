"""Keeping sources and callbacks off internal networks (SSRF): cloud metadata, loopback, private ranges.

Whoever can enqueue a job chooses a source URL the workers read and upload, and a
callback URL they POST to. Without a guard, ``http://169.254.169.254/...`` (cloud
metadata) or ``http://10.0.0.5:6379/`` would be fetched from inside the network.
The guard works at two moments:

* Enqueue time, ``check_url``: only http(s), a host must be present, and a host that
  is an address literal (in any form a resolver accepts: ``2852039166``,
  ``0xa9.0xfe.0xa9.0xfe``, ``0251.0376.0251.0376``, ``127.1``, ``[::ffff:a9fe:a9fe]``...)
  or a ``localhost`` name is judged by ``NetPolicy``. Real host names pass: what
  they resolve to can change at any moment (DNS rebinding), so they are judged at:
* Connect time, ``tasks.outbound.guarded_transport.GuardedBackend``: an httpcore network backend that resolves the
  host itself, drops every address the policy refuses, and connects to a permitted
  one by IP, so the address judged is the address connected to, whatever DNS says
  a second later, and a redirect to a private address fails the same way.

``NetPolicy`` refuses every address in a block of ``SPECIAL_IPV4``/``SPECIAL_IPV6``
(the IANA IPv4 and IPv6 Special-Purpose Address Registries' blocks that are not
globally reachable, plus multicast, site-local and, for IPv6, everything outside
the global unicast space 2000::/3) unless it lies in a network of
``VUQ_ALLOWED_PRIVATE_NETS``. The tables are written out here, each block with its
name, instead of asking ``ipaddress``'s ``is_global``/``is_private``: their tables
changed across Python 3.11..3.13 (``192.0.0.0/24`` is global on 3.11), and what a
worker refuses must not depend on the interpreter it runs on. IPv4 addresses
embedded in IPv6 (``::ffff:a.b.c.d``, ``::a.b.c.d``, ``::ffff:0:a.b.c.d``, 6to4
``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by their IPv4 address. A refusal
is ``BlockedAddress``, a ``PermanentError``: the job fails at once, it is not retried.

The connect-time half lives in ``tasks.outbound.guarded_transport``.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import unquote, urlsplit

import httpx

from tasks.errors import PermanentError
from tasks.redact import mask_url, redact

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "VUQ_ALLOWED_PRIVATE_NETS"
ALLOWED_SCHEMES = ("http", "https")

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 SIIT
# The IPv6 Address Space registry allocates only 2000::/3 as global unicast; the rest is reserved
# by the IETF or special (link-local, unique local, multicast), and judged as such.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


@dataclass(frozen=True)
class SpecialBlock:
    """A block of addresses sources and callbacks may not reach, and how a refusal names it."""

    network: IPNetwork
    kind: str  # "a link-local address": the refusal reads "<address> is <kind>"


def _block(cidr: str, kind: str) -> SpecialBlock:
    return SpecialBlock(ipaddress.ip_network(cidr), kind)


# The IANA IPv4 Special-Purpose Address Registry (RFC 6890, RFC 8190), every block whose
# "Globally Reachable" is False, and IPv4 multicast. Its globally reachable entries are in
# GLOBAL_SPECIAL_IPV4 below; the two inside 192.0.0.0/24 are refused with that block.
SPECIAL_IPV4: tuple[SpecialBlock, ...] = (
    _block("0.0.0.0/32", "an unspecified address"),  # "This host on this network", RFC 1122 s3.2.1.3
    _block("0.0.0.0/8", 'a non-global address ("this network", 0.0.0.0/8)'),  # "This network", RFC 791 s3.2
    _block("10.0.0.0/8", "a private address"),  # Private-Use, RFC 1918
    _block("100.64.0.0/10", "a shared address space (100.64.0.0/10, carrier-grade NAT) address"),  # RFC 6598
    _block("127.0.0.0/8", "a loopback address"),  # Loopback, RFC 1122 s3.2.1.3
    _block("169.254.0.0/16", "a link-local address"),  # Link Local, RFC 3927 (cloud metadata 169.254.169.254)
    _block("172.16.0.0/12", "a private address"),  # Private-Use, RFC 1918
    # IETF Protocol Assignments, RFC 6890 s2.1: DS-Lite 192.0.0.0/29 (RFC 7335), the dummy address
    # 192.0.0.8/32 (RFC 7600), NAT64/DNS64 discovery 192.0.0.170-171 (RFC 8880), and the PCP and TURN
    # anycast addresses 192.0.0.9/32 (RFC 7723) and 192.0.0.10/32 (RFC 8155): those two are globally
    # reachable, but they are protocol anycast services, never a video server, so the block is refused whole.
    _block("192.0.0.0/24", "a non-global address (IETF protocol assignments, 192.0.0.0/24)"),
    _block("192.0.2.0/24", "a non-global address (documentation, TEST-NET-1)"),  # Documentation, RFC 5737
    _block("192.88.99.0/24", "a non-global address (deprecated 6to4 relay anycast)"),  # RFC 7526 (was RFC 3068)
    _block("192.168.0.0/16", "a private address"),  # Private-Use, RFC 1918
    _block("198.18.0.0/15", "a non-global address (benchmarking, 198.18.0.0/15)"),  # Benchmarking, RFC 2544
    _block("198.51.100.0/24", "a non-global address (documentation, TEST-NET-2)"),  # Documentation, RFC 5737
    _block("203.0.113.0/24", "a non-global address (documentation, TEST-NET-3)"),  # Documentation, RFC 5737
    _block("224.0.0.0/4", "a multicast address"),  # IPv4 Multicast Address Space registry, RFC 5771
    _block("240.0.0.0/4", "a reserved address (240.0.0.0/4)"),  # Reserved, RFC 1112 s4
    _block("255.255.255.255/32", "a reserved address (limited broadcast)"),  # Limited Broadcast, RFC 8190, RFC 919 s7
)
# Registry entries that are globally reachable, and so allowed: anycast services anyone may reach.
GLOBAL_SPECIAL_IPV4 = tuple(ipaddress.IPv4Network(n) for n in (
    "192.31.196.0/24",  # AS112-v4, RFC 7535
    "192.52.193.0/24",  # AMT, RFC 7450
    "192.175.48.0/24",  # Direct Delegation AS112 Service, RFC 7534
))

# The IANA IPv6 Special-Purpose Address Registry (RFC 6890, RFC 8190), every block whose "Globally
# Reachable" is False, plus the address architecture's link-local, site-local and multicast blocks.
# The registry's ::ffff:0:0/96 (IPv4-mapped, RFC 4291), 64:ff9b::/96 (IPv4-IPv6 translation, RFC 6052)
# and 2002::/16 (6to4, RFC 3056) carry an IPv4 address and are judged by it (``embedded_ipv4``).
# Everything else outside 2000::/3 is refused as reserved (``refusal``).
SPECIAL_IPV6: tuple[SpecialBlock, ...] = (
    _block("::/128", "an unspecified address"),  # Unspecified Address, RFC 4291
    _block("::1/128", "a loopback address"),  # Loopback Address, RFC 4291
    _block("64:ff9b:1::/48", "a non-global address (local-use IPv4/IPv6 translation, 64:ff9b:1::/48)"),  # RFC 8215
    _block("100::/64", "a non-global address (discard-only, 100::/64)"),  # Discard-Only Address Block, RFC 6666
    # IETF Protocol Assignments, RFC 2928: TEREDO 2001::/32 (RFC 4380), benchmarking 2001:2::/48 (RFC 5180),
    # the deprecated ORCHID 2001:10::/28 (RFC 4843); its globally reachable entries (PCP and TURN anycast
    # 2001:1::1-2, DNS-SD SRP anycast 2001:1::3, AMT 2001:3::/32, AS112-v6 2001:4:112::/48, ORCHIDv2
    # 2001:20::/28, drone remote ID 2001:30::/28) are protocol services, never a video server: refused whole.
    _block("2001::/23", "a non-global address (IETF protocol assignments, 2001::/23)"),
    _block("2001:db8::/32", "a non-global address (documentation, 2001:db8::/32)"),  # Documentation, RFC 3849
    _block("3fff::/20", "a non-global address (documentation, 3fff::/20)"),  # Documentation, RFC 9637
    _block("5f00::/16", "a non-global address (SRv6 SIDs, 5f00::/16)"),  # Segment Routing (SRv6) SIDs, RFC 9602
    _block("fc00::/7", "a private (unique local) address"),  # Unique-Local, RFC 4193
    _block("fe80::/10", "a link-local address"),  # Link-Local Unicast, RFC 4291
    _block("fec0::/10", "a site-local address"),  # Site-local, deprecated by RFC 3879
    _block("ff00::/8", "a multicast address"),  # Multicast, RFC 4291 s2.7
)
# Registry entries that are globally reachable outside 2001::/23, and so allowed.
GLOBAL_SPECIAL_IPV6 = (
    ipaddress.IPv6Network("2620:4f:8000::/48"),  # Direct Delegation AS112 Service, RFC 7534
)
# Most specific first, so an address is named by the smallest block that holds it.
_BY_PREFIX = {4: sorted(SPECIAL_IPV4, key=lambda b: -b.network.prefixlen),
              6: sorted(SPECIAL_IPV6, key=lambda b: -b.network.prefixlen)}

# One part of a BSD (inet_aton) / WHATWG IPv4 literal: 0x-hex, 0-octal or decimal.
_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*", re.ASCII)
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # what UTS 46 maps to "."


class BlockedAddress(PermanentError):
    """A URL's host is, or resolves only to, an address the NetPolicy refuses (not retried)."""

    reason = "blocked_address"

    def __init__(self, subject: str, kind: str, address: IPAddress | None = None) -> None:
        super().__init__(f"{subject} is {kind}; vuq refuses non-global addresses unless {SETTING} "
                         "allows them (add its network there if this is intended)")
        self.subject = subject
        self.kind = kind
        self.address = address

    def __reduce__(self) -> tuple[type[BlockedAddress], tuple[str, str, IPAddress | None]]:
        return type(self), (self.subject, self.kind, self.address)


def parse_allowed_nets(text: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated CIDR list (``VUQ_ALLOWED_PRIVATE_NETS``); "" is none.

    A bare address is its own /32 (/128). ValueError names the bad entry, including
    one with host bits set (``10.1.2.3/8``), which is more likely a typo than a wish.
    """
    nets: list[IPNetwork] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            hint = ""
            with suppress(ValueError):
                hint = f" (did you mean {ipaddress.ip_network(entry, strict=False)}?)"
            raise ValueError(f"{entry!r} is not a network in CIDR notation like 10.0.0.0/8 or fd00::/8: "
                             f"{exc}{hint}") from None
    return tuple(nets)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, translated, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_TRANSLATED or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` is refused ("a link-local address"...), or None for a global address.

    An address with an embedded IPv4 address is judged by that address alone. The answer comes
    from the tables above only, the same on every Python version.
    """
    ip = embedded_ipv4(ip) or ip
    for block in _BY_PREFIX[ip.version]:
        if ip in block.network:
            return block.kind
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST:
        return "a reserved address (IPv6 outside the global unicast space 2000::/3)"
    return None


@dataclass(frozen=True)
class NetPolicy:
    """Which addresses workers may connect to: global ones, plus the allowed private networks."""

    allowed_private: tuple[IPNetwork, ...] = ()

    def allows(self, ip: IPAddress) -> bool:
        """Whether ``ip`` lies in an allowed network (itself or its embedded IPv4 address)."""
        embedded = embedded_ipv4(ip)
        return any(ip in net or (embedded is not None and embedded in net) for net in self.allowed_private)

    def permits(self, ip: IPAddress) -> bool:
        """Whether a connection to ``ip`` may be made (``check`` without the exception)."""
        return self.allows(ip) or refusal(ip) is None

    def check(self, ip: IPAddress, *, label: str | None = None) -> None:
        """Raise BlockedAddress unless ``ip`` is global or allowed; ``label`` says where it came from."""
        if self.allows(ip):
            return
        kind = refusal(ip)
        if kind is None:
            return
        named = label if label is not None and label != str(ip) else str(ip)
        details = [str(ip)] if named != str(ip) else []
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            details.append(f"IPv4 {embedded}")
        subject = f"{named} ({', '.join(details)})" if details else named
        raise BlockedAddress(subject, kind, ip)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host denotes when it is an address literal; None for a host name.

    IPv4 follows the BSD ``inet_aton`` rules (which getaddrinfo applies) and WHATWG
    URL host parsing: 1 to 4 parts, each decimal, 0-octal or 0x-hex, the last part
    filling the remaining bytes (``127.1``, ``10.1.2``, ``2852039166``), with one
    trailing dot allowed. Unlike some libcs' ``inet_aton`` nothing may follow.
    IPv6 may be in brackets, with a zone id (``%eth0`` or URL-encoded ``%25eth0``).
    Percent-escapes, full-width digits and ideographic dots are decoded first, as a
    browser would.
    """
    text = _normalize(host)
    bracketed = text.startswith("[") and text.endswith("]")
    if bracketed:
        text = text[1:-1]
    if not text:
        return None
    if bracketed or ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return _parse_ipv4(text)


def _normalize(host: str) -> str:
    """A host as a browser reads it: percent-decoded, NFKC (full-width digits), ideographic dots, lower case."""
    return unicodedata.normalize("NFKC", unquote(host)).translate(_DOTS).lower()


def _ipv4_number(part: str) -> int | None:
    if not _IPV4_PART.fullmatch(part):
        return None
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    if part.startswith("0"):
        return int(part, 8)
    return int(part) if len(part) <= 10 else None  # longer is out of range anyway


def _ipv4_parts(text: str) -> list[str]:
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot, as in an absolute name
    return parts


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    parts = _ipv4_parts(text)
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if any(n is None for n in numbers):
        return None
    *head, last = (n for n in numbers if n is not None)
    if any(n > 0xFF for n in head) or last >= 1 << (8 * (5 - len(parts))):
        return None
    value = last
    for i, n in enumerate(head):
        value |= n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _ends_in_number(text: str) -> bool:
    """WHATWG's test: a host whose last label is numeric is meant as IPv4 (and invalid if it is not one)."""
    last = _ipv4_parts(text)[-1]
    return bool(last) and ((last.isascii() and last.isdigit()) or _ipv4_number(last) is not None)


def _is_localhost(text: str) -> bool:
    name = text.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def check_url(url: str, policy: NetPolicy) -> None:
    """Refuse, at enqueue time, a source or callback URL that is not http(s) or names a refused address.

    ValueError for a URL that is malformed, not http(s) or without a host;
    BlockedAddress for an address literal (any form) or a ``localhost`` name the
    policy refuses. Host names pass: they are judged at connect time.
    """
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a valid URL: {redact(str(exc))}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        named = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ValueError(f"{shown!r} has {named}; only http:// and https:// URLs are allowed")
    if not hostname:
        raise ValueError(f"{shown!r} has no host")
    _check_host(hostname, shown, policy)
    try:
        client_host = httpx.URL(url).host  # what the worker's client will connect to, if parsers disagree
    except httpx.InvalidURL as exc:
        raise ValueError(f"{shown!r} is not a valid URL: {redact(str(exc))}") from None
    if client_host != hostname:
        _check_host(client_host, shown, policy)


def _check_host(host: str, shown: str, policy: NetPolicy) -> None:
    text = _normalize(host)
    if not text:
        raise ValueError(f"{shown!r} has no host")
    if any(c.isspace() or unicodedata.category(c)[0] == "C" for c in text):
        raise ValueError(f"{shown!r}: the host {host!r} holds whitespace or control characters")
    address = literal_address(host)
    if address is not None:
        policy.check(address, label=host)
        return
    if ":" in text or "[" in text:
        raise ValueError(f"{shown!r}: the host {host!r} is not a valid IPv6 address")
    if _ends_in_number(text):
        raise ValueError(f"{shown!r}: the host {host!r} looks like an IPv4 address but is not a valid one")
    if _is_localhost(text):
        loopback = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
        if not any(policy.permits(ip) for ip in loopback):
            raise BlockedAddress(host, "a loopback name")


def is_loopback(address: str) -> bool:
    """Whether a listening address or host keeps a service on this host (``localhost``, 127.0.0.0/8, ::1)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False
