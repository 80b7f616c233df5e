"""Every server event the Realtime adapter makes of the engine's events, for a spoken turn, a typed
one, an interrupted one and a failed one, validated against the openai SDK's own GA types (a missing
required field fails here), and the transcript deltas joined equal to each final transcript."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from services.common.errors import Status
from services.common.latency import Metric
from services.gateway.engine import events as ev
from services.gateway.engine.vocabulary import TurnOutcome
from services.gateway.realtime.beta import to_beta
from services.gateway.realtime.config import RealtimeConfig
from services.gateway.realtime.outgoing import Outgoing, event_id

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
PCM = b"\x10\x00" * 480


def spoken_turn(turn: str, clauses: list[str], ended: ev.Event, *more: ev.Event) -> list[ev.Event]:
    return [ev.SpeechStarted(turn, 1600), ev.SpeechEnded(turn, 1600, 17600, 0.9),
            *[ev.ResponseAudio(turn, PCM, 24000, text) for text in clauses], ev.ResponseAudio(turn, PCM, 24000, ""),
            ended, *more]


TURNS: dict[str, list[ev.Event]] = {
    "completed": spoken_turn("t1", ["Sure, I can help.", "The train leaves at nine."],
                             ev.TurnCompleted("t1", "when does it leave", "Sure, I can help. The train leaves at nine.",
                                              {Metric.E2E: 800.0}),
                             ev.TurnEnded("t1", TurnOutcome.COMPLETED, "when does it leave", True,
                                          "Sure, I can help. The train leaves at nine.", False, "", {})),
    "interrupted": spoken_turn("t2", ["Paris is lovely today,", "you should go."],
                               ev.Interrupted("t2", "Paris is lovely", 900.0),
                               ev.TurnEnded("t2", TurnOutcome.INTERRUPTED, "", False, "Paris is lovely", True,
                                            "user_speech", {})),
    "failed": spoken_turn("t3", ["One moment,"],
                          ev.ErrorEvent(Status.UNAVAILABLE, "tts failed: gone", True, "t3"),
                          ev.TurnEnded("t3", TurnOutcome.FAILED, "hello", True, "One moment,", True, "tts failed", {})),
}


def served(events: list[ev.Event]) -> list[dict[str, Any]]:
    out = Outgoing(lambda pcm: pcm, manual=False, rate_hz=16000)
    return [{"event_id": event_id(), **body} for event in events for body in out.map(event)]


@pytest.mark.parametrize("turn", TURNS)
def test_every_server_event_is_a_ga_event(turn: str) -> None:
    bodies = served(TURNS[turn])
    assert bodies
    for body in bodies:
        SERVER_EVENT.validate_python(body)  # raises, naming the field, when one is missing or mistyped


@pytest.mark.parametrize("turn", TURNS)
def test_transcript_deltas_join_to_the_final_transcript(turn: str) -> None:
    bodies = served(TURNS[turn])
    joined = "".join(b["delta"] for b in bodies if b["type"] == "response.output_audio_transcript.delta")
    done = [b for b in bodies if b["type"] == "response.done"]
    assert len(done) == 1
    final = done[0]["response"]["output"][0]["content"][0]["transcript"]
    assert joined.startswith(final) if turn == "interrupted" else joined == final  # heard: a prefix of what was said


@pytest.mark.parametrize("turn", TURNS)
def test_the_beta_dialect_is_beta_events(turn: str) -> None:
    from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent

    beta = TypeAdapter(BetaServerEvent)
    config = RealtimeConfig()
    bodies = [{"event_id": "e0", "type": "session.created", "session": config.describe("s1")}, *served(TURNS[turn])]
    names = []
    for body in bodies:
        if (wire := to_beta(body)) is not None:
            # The beta type closes session.model to OpenAI's model names; all else is checked as typed.
            checked = {**wire, "session": {**wire["session"], "model": "gpt-realtime"}} if "session" in wire else wire
            beta.validate_python(checked)
            names.append(wire["type"])
    assert "response.audio.delta" in names and "response.audio_transcript.delta" in names
    assert not any(name.startswith("response.output_audio") for name in names)


def test_a_failed_response_is_told_by_its_response_done_alone() -> None:
    bodies = served(TURNS["failed"])
    done = [b for b in bodies if b["type"] == "response.done"]
    assert len(done) == 1 and done[0]["response"]["status"] == "failed"
    assert done[0]["response"]["status_details"]["error"]["message"] == "tts failed: gone"
    assert not [b for b in bodies if b["type"] == "error"]  # a client may take an error event as fatal
