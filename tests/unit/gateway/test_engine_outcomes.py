"""Every reply ends once (turn_ended, the turns counter, the log line), whatever ends it; typed
turns are answered like spoken ones. The fake stages and a real Redis, milliseconds per test."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.common.errors import Status
from services.gateway.engine.events import (
    ErrorEvent,
    Interrupted,
    ResponseAudio,
    SpeechStarted,
    TextTurn,
    TurnCompleted,
    TurnEnded,
)
from services.gateway.engine.inputs import SessionRequest, UserText
from services.gateway.engine.vocabulary import Control, Stage, StopReason, TurnOutcome, VadEventKind
from tests.support.engine_client import RATE, Client, engine, until, utter
from tests.support.fake_stages import FakeStages

REPLY = "Paris is lovely today, you should go and walk by the river."


def counted(client: Client) -> dict[TurnOutcome, float]:
    """The engine's own turn counts by outcome (those that have one)."""
    counts = {o: client.engine.metrics.value("voice_turns_total", outcome=o.value) for o in TurnOutcome}
    return {o: n for o, n in counts.items() if n}


async def test_each_outcome_ends_its_turn_once(stages: FakeStages,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A completed turn, one failed in Voxtral, one cut off by speech and one by the client: four
    turn_ended events, four counts, four log lines, each with its reason."""
    caplog.set_level(logging.INFO, logger="services.gateway.engine.replies")
    client = Client(engine(stages, barge_in_reversible=False))
    await utter(client, stages)
    await client.wait_for(TurnEnded, 1)
    stages.voxtral.fail_code, stages.voxtral.fail_after = "UNAVAILABLE", 1
    await utter(client, stages)
    await client.wait_for(TurnEnded, 2)
    stages.voxtral.fail_code = ""
    stages.tts.stall = gate = asyncio.Event()
    await utter(client, stages)
    await until(lambda: len(stages.of(Stage.TTS)) >= 3)
    await utter(client, stages)  # over the third reply
    await client.wait_for(TurnEnded, 3)
    await until(lambda: len(stages.of(Stage.TTS)) >= 4)
    client.control(Control.INTERRUPT)
    await client.wait_for(TurnEnded, 4)
    gate.set()
    await client.end()
    ended = client.of(TurnEnded)
    turns = [s.turn_id for s in client.of(SpeechStarted)]
    assert [e.turn_id for e in ended] == turns
    assert [e.outcome for e in ended] == [TurnOutcome.COMPLETED, TurnOutcome.FAILED, TurnOutcome.INTERRUPTED,
                                          TurnOutcome.INTERRUPTED]
    assert ended[1].reason.startswith("voxtral failed: UNAVAILABLE")
    assert [e.reason for e in ended[2:]] == [StopReason.SPEECH, StopReason.CLIENT]
    assert all(e.user_text == stages.transcript and e.user_text_known for e in ended)
    assert ended[0].heard_text == REPLY and not ended[0].cut_off
    assert ended[1].heard_text == "Paris is lovely today,"  # Voxtral failed after its first clause
    assert set(ended[0].metrics) >= {"e2e_ms", "turn_ms"}
    assert counted(client) == {TurnOutcome.COMPLETED: 1, TurnOutcome.FAILED: 1, TurnOutcome.INTERRUPTED: 2}
    lines = [r for r in caplog.records if r.getMessage().startswith("turn ")]
    assert [(r.getMessage(), r.turn_id) for r in lines] == [(f"turn {e.outcome}", e.turn_id) for e in ended]  # type: ignore[attr-defined]  # set by `extra`
    # Each turn's own events: completed gets turn_completed, failed an error, interrupted interrupted.
    assert [e.turn_id for e in client.of(TurnCompleted)] == turns[:1]
    assert [e.turn_id for e in client.of(ErrorEvent)] == turns[1:2]
    assert [e.turn_id for e in client.of(Interrupted)] == turns[2:]


async def test_a_failed_speculation_confirmed_then_talked_over_has_one_outcome(stages: FakeStages) -> None:
    """The reply started on a pause fails before the speech is known to have ended; speech over it
    right after the confirmation must not add a second outcome."""
    stages.voxtral.fail_code, stages.voxtral.fail_after = "INTERNAL", 0
    client = Client(engine(stages, barge_in_reversible=False, speculate=True))
    start, end = await utter(client, stages, ends=False)
    stages.vad.event(VadEventKind.PAUSED, start, end, probability=0.9)
    await until(lambda: stages.of(Stage.VOXTRAL, "respond") and stages.of(Stage.VOXTRAL, "respond")[0].ended != "open")
    stages.vad.event(VadEventKind.ENDED, start, end)
    await utter(client, stages)  # at once: over the confirmed reply, if it is still the one answering
    await client.wait_for(TurnEnded, 2)
    await client.end()
    ended = client.of(TurnEnded)
    assert len({e.turn_id for e in ended}) == len(ended) == 2
    assert ended[0].outcome in (TurnOutcome.FAILED, TurnOutcome.INTERRUPTED)
    assert sum(counted(client).values()) == 2
    outcomes_of_first = [e for e in client.events if getattr(e, "turn_id", None) == ended[0].turn_id
                         and isinstance(e, (ErrorEvent, Interrupted, TurnCompleted))]
    assert len(outcomes_of_first) == 1


async def test_a_typed_turn_is_answered_and_kept_in_context(stages: FakeStages) -> None:
    client = Client(engine(stages))
    client.send(UserText("What should I see in Paris?"))
    taken = await client.wait_for(TextTurn)
    done = await client.wait_for(TurnEnded)
    await utter(client, stages)
    await client.wait_for(TurnEnded, 2)
    await client.end()
    respond = stages.of(Stage.VOXTRAL, "respond")
    assert respond[0].args["text"] == "What should I see in Paris?" and respond[0].args["samples"] == 0
    assert done.turn_id == taken.turn_id and done.outcome is TurnOutcome.COMPLETED
    assert done.user_text == taken.text and done.heard_text == REPLY
    assert " ".join(a.text for a in client.of(ResponseAudio) if a.turn_id == taken.turn_id) == REPLY
    assert "e2e_ms" in done.metrics
    assert [(h.role, h.text) for h in stages.histories[1]] == [("user", taken.text), ("assistant", REPLY)]
    assert all(c.args["turn_id"] != taken.turn_id for c in stages.of(Stage.VOXTRAL, "transcribe"))


async def test_a_typed_turn_cuts_the_reply_in_progress_short(stages: FakeStages) -> None:
    stages.tts.stall = asyncio.Event()
    client = Client(engine(stages))
    await utter(client, stages)
    await until(lambda: stages.of(Stage.TTS))
    client.send(UserText("Never mind, tell me about Rome."))
    stages.tts.stall.set()
    await client.wait_for(TurnEnded, 2)
    await client.end()
    first, second = client.of(TurnEnded)
    assert first.outcome is TurnOutcome.INTERRUPTED and first.reason == StopReason.NEW_TURN
    assert second.outcome is TurnOutcome.COMPLETED and second.user_text == "Never mind, tell me about Rome."


@pytest.mark.parametrize("text", ["", "   \n", "x" * 4001])
async def test_an_empty_or_huge_typed_turn_is_an_error_and_the_session_goes_on(text: str, stages: FakeStages) -> None:
    client = Client(engine(stages))
    client.send(UserText(text))
    error = await client.wait_for(ErrorEvent)
    await utter(client, stages)
    await client.wait_for(TurnEnded)
    await client.end()
    assert error.code is Status.INVALID_ARGUMENT and error.session_continues
    assert ("4000" in error.message) if text.strip() else ("empty" in error.message)
    assert not client.of(TextTurn) and not stages.of(Stage.VOXTRAL, "respond")[0].args["text"]


async def test_a_typed_turn_in_a_manual_session(stages: FakeStages) -> None:
    client = Client(engine(stages), SessionRequest(RATE, manual_turns=True))
    client.send(UserText("Hello there"))
    done = await client.wait_for(TurnEnded)
    await client.end()
    assert done.outcome is TurnOutcome.COMPLETED and done.user_text == "Hello there"
