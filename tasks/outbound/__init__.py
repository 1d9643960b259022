"""The guarded outbound edge: every connection to a place a producer chose (sources, callbacks).

Rule of this room: it imports only the base (``tasks.constants``, ``tasks.errors``,
``tasks.redact``) and httpx. What a producer names is hostile until allowed: addresses are judged
when a spec arrives (``check_url``) and again on the address actually connected to
(``guarded_client``). A source is opened once per step and read only through what was opened, within
``SourceLimits``; a callback attempt has a deadline and reads at most 64 KiB of its answer
(docs/security.md, "Sources and callbacks").
"""

from tasks.outbound.address_policy import BlockedAddress, NetPolicy, check_url, is_loopback, parse_allowed_nets
from tasks.outbound.callbacks import post_callback
from tasks.outbound.guarded_transport import guarded_client
from tasks.outbound.sources import Source, SourceInfo, SourceLimits, check_local_source, open_source

__all__ = ["BlockedAddress", "NetPolicy", "Source", "SourceInfo", "SourceLimits", "check_local_source", "check_url",
           "guarded_client", "is_loopback", "open_source", "parse_allowed_nets", "post_callback"]
