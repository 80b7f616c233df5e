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
from services.common.tools import ToolCall
from services.gateway.engine import events as ev
from services.gateway.engine.vocabulary import TurnOutcome
from services.gateway.realtime.beta import to_beta
from services.gateway.realtime.config import RealtimeConfig
from services.gateway.realtime.outgoing import Outgoing, event_id

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
PCM = b"\x10\x00" * 480
PARIS = ToolCall("call00001", "get_time", {"city": "Paris"})
ROME = ToolCall("call00002", "get_time", {"city": "Rome"})


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
    "tool call": [ev.SpeechStarted("t4", 1600), ev.SpeechEnded("t4", 1600, 17600, 0.9),
                  ev.ResponseAudio("t4", PCM, 24000, "Let me look."), ev.ToolCalled("t4", (PARIS, ROME)),
                  ev.ResponseAudio("t4", PCM, 24000, "It is ten to eleven.", 40.0),
                  ev.TurnCompleted("t4", "what time is it", "Let me look. It is ten to eleven.", {}),
                  ev.TurnEnded("t4", TurnOutcome.COMPLETED, "what time is it", True,
                               "Let me look. It is ten to eleven.", False, "", {})],
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
    done = [b for b in bodies if b["type"] == "response.done"]
    assert len(done) == (2 if turn == "tool call" else 1)  # a turn that calls tools: one response per round
    for response in done:
        joined = "".join(b["delta"] for b in bodies if b["type"] == "response.output_audio_transcript.delta"
                         and b["response_id"] == response["response"]["id"])
        final = response["response"]["output"][0]["content"][0]["transcript"]
        assert joined.startswith(final) if turn == "interrupted" else joined == final  # heard: a prefix of it


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


def test_a_tool_call_ends_its_response_with_the_function_calls_and_the_answer_comes_in_the_next() -> None:
    bodies = served(TURNS["tool call"])
    first, second = [b["response"] for b in bodies if b["type"] == "response.done"]
    assert first["id"] != second["id"] and first["status"] == second["status"] == "completed"
    message, *calls = first["output"]
    assert message["content"][0]["transcript"] == "Let me look."
    assert [(c["type"], c["name"], c["call_id"], c["arguments"]) for c in calls] == [
        ("function_call", "get_time", "call00001", '{"city":"Paris"}'),
        ("function_call", "get_time", "call00002", '{"city":"Rome"}')]
    arguments = [b for b in bodies if b["type"] == "response.function_call_arguments.done"]
    assert [(a["call_id"], a["output_index"]) for a in arguments] == [("call00001", 1), ("call00002", 2)]
    assert second["output"][0]["content"][0]["transcript"] == "It is ten to eleven."


def test_a_reply_that_only_calls_a_tool_has_no_message_item() -> None:
    bodies = served([ev.TextTurn("t5", "what time is it"), ev.ToolCalled("t5", (PARIS,))])
    for body in bodies:
        SERVER_EVENT.validate_python(body)
    done = [b["response"] for b in bodies if b["type"] == "response.done"]
    assert [o["type"] for o in done[0]["output"]] == ["function_call"]


def test_a_tool_that_times_out_fails_a_response_without_an_error_event() -> None:
    bodies = served([ev.TextTurn("t6", "what time is it"), ev.ToolCalled("t6", (PARIS,)),
                     ev.ErrorEvent(Status.DEADLINE_EXCEEDED, "tool get_time gave no result within 30 s", True, "t6")])
    done = [b["response"] for b in bodies if b["type"] == "response.done"]
    assert [d["status"] for d in done] == ["completed", "failed"] and not [b for b in bodies if b["type"] == "error"]
