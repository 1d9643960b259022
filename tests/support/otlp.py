"""A local OTLP/HTTP receiver on 127.0.0.1: what a collector would get from vuq's workers and producers.

It answers ``POST /v1/traces`` (``application/x-protobuf``, gzip or not) and decodes each body as an
``ExportTraceServiceRequest`` with ``opentelemetry-proto``, keeping every span with its resource, and the
whole request as text (for looking for secrets in spans, events and resources alike). Point a process at
it with ``OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint`` and ``OTEL_TRACES_EXPORTER=otlp``.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from tests.support.httpd import serve

KINDS = {ProtoSpan.SPAN_KIND_INTERNAL: "internal", ProtoSpan.SPAN_KIND_SERVER: "server",
         ProtoSpan.SPAN_KIND_CLIENT: "client", ProtoSpan.SPAN_KIND_PRODUCER: "producer",
         ProtoSpan.SPAN_KIND_CONSUMER: "consumer"}


@dataclass(frozen=True)
class Span:
    """One received span, plainly."""

    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, Any]


@dataclass
class Receiver:
    endpoint: str = ""
    spans: list[Span] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # every request, as JSON text
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope in resource_spans.scope_spans:
                spans += [_span(s, resource) for s in scope.spans]
        text = str(MessageToDict(request))
        with self.lock:
            self.spans += spans
            self.texts.append(text)
            self.requests += 1

    def collected(self) -> list[Span]:
        with self.lock:
            return list(self.spans)

    def text(self) -> str:
        with self.lock:
            return "\n".join(self.texts)


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in pairs}


def _span(s: ProtoSpan, resource: dict[str, Any]) -> Span:
    return Span(trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_id=s.parent_span_id.hex(), name=s.name,
                kind=KINDS.get(s.kind, "unspecified"), start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                attributes=attributes(s.attributes), events=[(e.name, attributes(e.attributes)) for e in s.events],
                status=s.status.code, resource=resource)


@contextmanager
def receiving_traces() -> Iterator[Receiver]:
    """Serve a receiver on a free port of 127.0.0.1; ``receiver.endpoint`` is its base URL."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path.rstrip("/") != "/v1/traces":
                self._answer(404, b"")
                return
            if self.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception:
                self._answer(400, b"")
                return
            state.take(request)
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        state.endpoint = base
        yield state


def tree(spans: list[Span], shown: tuple[str, ...] = ("vuq.chunk.index", "vuq.chunk.bytes", "vuq.request_class",
                                                       "http.response.status_code", "vuq.task")) -> str:
    """The spans of one trace as an indented tree (children by start time), with a few attributes and the
    events; a span whose parent never arrived hangs under ``(not received)``."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids or not s.parent_id else "(not received)"
        children.setdefault(parent, []).append(s)
    start = min((s.start_ns for s in spans), default=0)
    lines: list[str] = []

    def show(span_id: str, depth: int) -> None:
        for s in sorted(children.get(span_id, []), key=lambda s: s.start_ns):
            extra = " ".join(f"{k.split('.')[-1]}={s.attributes[k]}" for k in shown if k in s.attributes)
            events = "".join(f" [{name}]" for name, _ in s.events)
            lines.append(f"{'  ' * depth}{s.name:<{40 - 2 * depth}} +{(s.start_ns - start) / 1e9:7.3f}s "
                         f"{(s.end_ns - s.start_ns) / 1e6:9.1f} ms  {extra}{events}".rstrip())
            show(s.span_id, depth + 1)

    show("", 0)
    if "(not received)" in children:
        lines.append("(parent not received: the step the SIGKILL ended)")
        show("(not received)", 1)
    return "\n".join(lines)


COLOURS = {"internal": "#7a7a7a", "consumer": "#3b6fb6", "client": "#e08a2c"}


def svg(spans: list[Span], title: str = "") -> str:
    """The spans of one trace as a timeline picture (SVG): one row per span in tree order, indented names on
    the left, bars on a common time axis (root grey, steps blue, requests orange, the janitor's rescue red)."""
    ids = {s.span_id for s in spans}
    rows: list[tuple[int, Span]] = []

    def walk(parent: str, depth: int) -> None:
        for s in sorted((s for s in spans if s.parent_id == parent), key=lambda s: s.start_ns):
            rows.append((depth, s))
            walk(s.span_id, depth + 1)

    walk("", 0)
    rows += [(1, s) for s in sorted(spans, key=lambda s: s.start_ns) if s.parent_id and s.parent_id not in ids]
    start = min(s.start_ns for s in spans)
    span_s = max((max(s.end_ns for s in spans) - start) / 1e9, 0.001)
    left, width, row, top = 330, 620, 17, 56
    scale = width / span_s
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{top + row * len(rows) + 30}" '
           'font-family="DejaVu Sans Mono, monospace" font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/><text x="8" y="18" font-size="13">{_xml(title)}</text>']
    step = next(t for t in (0.5, 1, 2, 5, 10, 30, 60, 300, 600, 3600) if span_s / t <= 12)
    for k in range(int(span_s / step) + 1):
        x = left + k * step * scale
        out.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{top + row * len(rows)}" stroke="#e6e6e6"/>'
                   f'<text x="{x:.1f}" y="{top - 12}" fill="#777" text-anchor="middle">{k * step:g}s</text>')
    for i, (depth, s) in enumerate(rows):
        y = top + i * row
        colour = "#c0392b" if s.name == "vuq.janitor.rescue" else COLOURS.get(s.kind, "#7a7a7a")
        label = s.name + (f" #{s.attributes['vuq.chunk.index']}" if "vuq.chunk.index" in s.attributes else "")
        if s.parent_id and s.parent_id not in ids:
            label += " (its step was killed)"
        x, w = left + (s.start_ns - start) / 1e9 * scale, max((s.end_ns - s.start_ns) / 1e9 * scale, 1.5)
        error = s.status == 2 or int(s.attributes.get("http.response.status_code", 0) or 0) >= 400
        outline = ' stroke="#c0392b" stroke-width="1.5"' if error else ""
        out.append(f'<text x="{8 + 12 * depth}" y="{y + 12}">{_xml(label)}</text>'
                   f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 5}" rx="2" '
                   f'fill="{colour}"{outline}/>')
    out.append("</svg>")
    return "\n".join(out)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
