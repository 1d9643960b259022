"""Whether this process traces: the standard ``OTEL_*`` variables decide, read once, and nothing of
OpenTelemetry is imported to decide it.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter other than ``none`` (``otlp``, ``console``),
or, with that variable unset, when an OTLP endpoint is given (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` turns it off whatever the rest says. Off
otherwise: OpenTelemetry's own default exporter is ``otlp``, but a worker that was told nothing sends
nothing. Whether the ``vuq[otel]`` extra is installed is found out only once tracing is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

EXPORTERS = ("otlp", "console")  # what vuq[otel] can send with


def exporters(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The span exporters the environment asks for (empty: tracing is off)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    named = tuple(dict.fromkeys(
        name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()))
    if named:
        return tuple(name for name in named if name != "none")
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return ("otlp",) if endpoint else ()


_asked: tuple[str, ...] | None = None


def asked() -> tuple[str, ...]:
    """``exporters()`` of this process's environment, read on first use."""
    global _asked
    if _asked is None:
        _asked = exporters()
    return _asked


def forget() -> None:
    """Read the environment again next time (tests)."""
    global _asked
    _asked = None
