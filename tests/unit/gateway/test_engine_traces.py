"""A turn's trace on the fake stages (the SDK's in-memory exporter): one trace per turn from the
start of the speech to the turn's end, its parts as children, the VAD told which trace the
utterance is in, the session a trace of its own that each turn links to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.latency import Metric
from services.gateway.engine.events import ReplyPaused, ReplyResumed, SpeechStarted, TurnEnded
from services.gateway.engine.vocabulary import Stage, VadEventKind
from tests.support.engine_client import Client, engine, reply_playing, speech, utter
from tests.support.fake_stages import FakeStages

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this process (a provider can be set once; later tests run traced, as they may)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def named(found: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


async def test_a_turn_is_one_trace_of_its_parts(spans: InMemorySpanExporter, stages: FakeStages) -> None:
    client = Client(engine(stages))
    await utter(client, stages)
    ended = await client.wait_for(TurnEnded)
    await client.end()
    found = list(spans.get_finished_spans())
    [turn] = named(found, "turn")
    [session] = named(found, "session")
    assert turn.parent is None and turn.context.trace_id != session.context.trace_id  # a trace of its own
    assert [link.context.span_id for link in turn.links] == [session.context.span_id]
    attributes = dict(turn.attributes or {})
    assert attributes["turn_id"] == ended.turn_id and attributes["outcome"] == "completed"
    assert attributes["e2e_ms"] == ended.metrics[Metric.E2E]
    in_turn = [s for s in found if s.context.trace_id == turn.context.trace_id]
    ids = {s.context.span_id for s in in_turn}
    assert all(s.parent is None or s.parent.span_id in ids for s in in_turn)  # nothing orphaned
    children = {s.name for s in in_turn if s.parent is not None and s.parent.span_id == turn.context.span_id}
    assert {"end_of_turn_wait", "voxtral.respond", "tts.synthesize", "voxtral.transcribe",
            "redis.append_exchange", "redis.record_turn"} <= children
    [respond] = named(in_turn, "voxtral.respond")
    assert [e.name for e in respond.events] == ["first_token"]
    clauses = named(in_turn, "tts.synthesize")
    assert len(clauses) == len(stages.of(Stage.TTS, "synthesize")) >= 2  # one span per clause
    assert all([e.name for e in c.events] == ["first_audio"] for c in clauses)
    [waited] = named(in_turn, "end_of_turn_wait")
    assert (waited.start_time or 0) <= (waited.end_time or 0) <= (respond.start_time or 0)
    # The VAD heard which trace the utterance is in (W3C traceparent naming the turn span).
    [carrier] = stages.vad.traces
    assert carrier["traceparent"].split("-")[1:3] == [f"{turn.context.trace_id:032x}", f"{turn.context.span_id:016x}"]


async def test_speech_judged_no_turn_ends_its_trace_so(spans: InMemorySpanExporter, stages: FakeStages) -> None:
    client = Client(engine(stages))
    first, gate = await reply_playing(client, stages)
    start, end = speech(client, stages, 900)
    await stages.vad.heard(end)
    stages.vad.event(VadEventKind.STARTED, start, start)
    await client.wait_for(ReplyPaused)
    stages.vad.event(VadEventKind.ENDED, start, end, voiced_ms=250)  # a cough over the reply
    await client.wait_for(ReplyResumed)
    gate.set()
    await client.wait_for(TurnEnded)
    await client.end()
    turns = {dict(s.attributes or {})["turn_id"]: dict(s.attributes or {})["outcome"]
             for s in named(list(spans.get_finished_spans()), "turn")}
    assert turns == {first: "completed", client.of(SpeechStarted)[-1].turn_id: "no_turn"}
    assert len(stages.vad.traces) == 2  # each utterance's trace named to the VAD
