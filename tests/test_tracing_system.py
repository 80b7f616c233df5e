"""One trace per turn across the four services: real processes exporting OTLP to a receiver this
test runs, a real question spoken to the gateway, and the turn's trace read back: every span of it,
from every service, parented to a span of the same trace under the one `turn` root."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tools.local_redis import free_port
from tools.stack import Stack

# Every service as real processes, tracing on.
pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parents[1]


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

    def Export(self, request, context):  # the OTLP service's method name
        for resource in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for s in scope.spans:
                    values = {a.key: _value(a.value) for a in s.attributes}
                    self.spans.append(Span(attrs.get("service.name", ""), s.name, s.trace_id.hex(), s.span_id.hex(),
                                           s.parent_span_id.hex(), s.start_time_unix_nano, s.end_time_unix_nano,
                                           values, [e.name for e in s.events]))
        return trace_service_pb2.ExportTraceServiceResponse()


def _value(v) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    found = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield found, port
    server.stop(0)


@pytest.fixture(scope="module")
def traced_stack(english_voxtral: Path, receiver: tuple[Receiver, int]) -> Iterator[Stack]:
    otel = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver[1]}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    running = Stack(english_voxtral, every_env=otel, GATEWAY_ADMISSION__ENABLED="false",
                    GATEWAY_METRICS_PORT=str(free_port()))
    yield running
    running.stop()


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


def test_a_spoken_turn_is_one_trace_across_the_four_services(traced_stack: Stack,
                                                            receiver: tuple[Receiver, int]) -> None:
    found, _ = receiver
    said = subprocess.run([sys.executable, "-m", "services.gateway.client", str(ROOT / "examples" / "question.wav"),
                           "--target", traced_stack.gateway], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          check=True)
    match = re.search(r'speech_started  turn_id: "(\w+)"', said.stdout)
    assert match and "turn_ended      completed" in said.stdout, said.stdout
    turn_id = match.group(1)
    wanted = {("gateway", name) for name in ("turn", "end_of_turn_wait", "voxtral.respond", "tts.synthesize",
                                             "voxtral.transcribe", "redis.append_exchange", "redis.record_turn")}
    wanted |= {("vad", "vad.utterance"), ("vad", "vad.end_of_turn_model")}
    wanted |= {("voxtral", name) for name in ("voxtral.queue", "voxtral.generate", "/voice.v1.VoxtralService/Respond",
                                              "/voice.v1.VoxtralService/Transcribe")}
    wanted |= {("tts", name) for name in ("tts.queue", "tts.compute", "/voice.v1.TtsService/Synthesize")}
    deadline = time.monotonic() + 30
    spans: list[Span] = []
    while time.monotonic() < deadline:
        roots = [s for s in found.spans if s.name == "turn" and s.attributes.get("turn_id") == turn_id]
        if roots:
            spans = [s for s in found.spans if s.trace_id == roots[0].trace_id]
            if wanted <= {(s.service, s.name) for s in spans}:
                break
        time.sleep(0.2)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "turn-trace.txt").write_text(render(spans) + "\n")
    assert wanted <= {(s.service, s.name) for s in spans}, render(spans)
    ids = {s.span_id: s for s in spans}
    [root] = [s for s in spans if not s.parent_id]
    assert root.name == "turn" and root.attributes["outcome"] == "completed"
    assert root.attributes["session_id"] and float(str(root.attributes["e2e_ms"])) > 0
    assert all(s.parent_id in ids for s in spans if s is not root), render(spans)  # all parented in the trace

    def ancestors(s: Span) -> list[str]:
        chain = []
        while s.parent_id:
            s = ids[s.parent_id]
            chain.append(f"{s.service}:{s.name}")
        return chain

    generate = next(s for s in spans if s.name == "voxtral.generate"
                    and "gateway:voxtral.respond" in ancestors(s))
    assert ancestors(generate)[-1] == "gateway:turn"
    assert any("gateway:tts.synthesize" in ancestors(s) for s in spans if s.name == "tts.compute")
    assert all(ancestors(s) == ["gateway:turn"] for s in spans if s.service == "vad" and s.name == "vad.utterance")
    assert "first_token" in next(s for s in spans if s.name == "voxtral.respond").events
