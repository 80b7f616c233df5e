"""An OTLP/gRPC trace receiver in this process (the tracing test and benchmark point the services'
exporters at it), and a text rendering of a trace."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, object] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def Export(self, request: Any, context: Any) -> Any:  # the OTLP service's method name
        for resource in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for s in scope.spans:
                    values = {a.key: _value(a.value) for a in s.attributes}
                    self.spans.append(Span(attrs.get("service.name", ""), s.name, s.trace_id.hex(), s.span_id.hex(),
                                           s.parent_span_id.hex(), s.start_time_unix_nano, s.end_time_unix_nano,
                                           values, [e.name for e in s.events]))
        return trace_service_pb2.ExportTraceServiceResponse()


def _value(v: Any) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@contextlib.contextmanager
def receiving() -> Iterator[tuple[Receiver, int]]:
    """A receiver listening on a free loopback port: (what it received, the port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    found = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield found, port
    finally:
        server.stop(0)


def render(spans: list[Span]) -> str:
    """The trace as an indented tree: service, name, start offset and duration in ms."""
    children: dict[str, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id, []).append(s)
    t0 = min(s.start_ns for s in spans)
    lines: list[str] = []

    def walk(s: Span, depth: int) -> None:
        lines.append(f"{'  ' * depth}{s.name:<{44 - 2 * depth}} {s.service:8} +{(s.start_ns - t0) / 1e6:7.1f} ms "
                     f"{(s.end_ns - s.start_ns) / 1e6:7.1f} ms" + (f"  [{', '.join(s.events)}]" if s.events else ""))
        for child in sorted(children.get(s.span_id, []), key=lambda c: c.start_ns):
            walk(child, depth + 1)

    for root in children.get("", []):
        walk(root, 0)
    return "\n".join(lines)


def exporting_to(port: int) -> dict[str, str]:
    """The environment that makes a service send its spans to a receiver on `port`, promptly."""
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "200"}
