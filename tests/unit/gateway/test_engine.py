"""The conversation engine on the fake stages (and a real Redis): turns, barge-in at each phase,
a VAD outage, stage errors, context, late transcripts, cancellation. Milliseconds per test; the
same behaviour is shown end to end on real processes in test_gateway_e2e.py and _faults.py."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import Status
from services.gateway.engine import vad_link
from services.gateway.engine.events import (
    ErrorEvent,
    Interrupted,
    ResponseAudio,
    ResponseText,
    SessionStarted,
    SpeechEnded,
    SpeechStarted,
    TurnCompleted,
    TurnEnded,
)
from services.gateway.engine.inputs import Audio, SessionRequest
from services.gateway.engine.vocabulary import Control, EventType, Stage, VadEventKind
from tests.support.engine_client import RATE, Client, engine, until, utter
from tests.support.fake_stages import FakeStages

REPLY = "Paris is lovely today, you should go and walk by the river."
METRICS = {"endpoint_ms", "voxtral_ttft_ms", "first_clause_ms", "tts_ttfb_ms", "e2e_ms", "turn_ms", "overhead_ms"}


async def stored_context(client: Client) -> list[tuple[str, str]]:
    session_id = client.of(SessionStarted)[0].session_id
    return [(e.user, e.assistant) for e in await client.engine.store.context(session_id)]


async def test_one_turn(stages: FakeStages) -> None:
    client = Client(engine(stages))
    await utter(client, stages, ms=600)
    done = await client.wait_for(TurnCompleted)
    await client.end()
    assert [e.type for e in client.events[:3]] == [EventType.SESSION_STARTED, EventType.SPEECH_STARTED,
                                                    EventType.SPEECH_ENDED]
    assert client.events[-2] is done and isinstance(client.events[-1], TurnEnded)
    assert "".join(e.delta for e in client.of(ResponseText)) == REPLY
    assert " ".join(a.text for a in client.of(ResponseAudio)) == REPLY == done.heard_text
    assert done.user_text == stages.transcript
    assert set(done.metrics) >= METRICS
    assert stages.of(Stage.VOXTRAL, "respond")[0].args["samples"] == 600 * 16  # the whole utterance, at 16 kHz
    assert [c.ended for c in stages.calls] == ["done"] * len(stages.calls)
    assert await stored_context(client) == [(stages.transcript, REPLY)]


async def test_transcription_waits_until_the_reply_is_written_and_synthesised(stages: FakeStages) -> None:
    client = Client(engine(stages))
    await utter(client, stages)
    await client.wait_for(TurnCompleted)
    await client.end()
    order = [(c.stage, c.what) for c in stages.calls]
    last_synthesis = max(i for i, call in enumerate(stages.calls) if call.stage is Stage.TTS)
    assert order.index((Stage.VOXTRAL, "transcribe")) > last_synthesis
    assert len(stages.of(Stage.VOXTRAL, "transcribe")) == 1


@pytest.mark.parametrize("phase", ["thinking", "first clause synthesising", "speaking"])
async def test_barge_in_stops_the_reply_and_keeps_what_was_said(phase: str, stages: FakeStages) -> None:
    gate = asyncio.Event()
    if phase == "thinking":
        stages.voxtral.stall = gate  # no text yet
    elif phase == "first clause synthesising":
        stages.tts.stall = gate
    else:
        stages.tts.stall, stages.tts.stall_after = gate, 2  # two words played, then mid-clause
    said = {"thinking": "", "first clause synthesising": "", "speaking": "Paris is"}[phase]
    client = Client(engine(stages, barge_in_reversible=False))
    await utter(client, stages)
    await until(lambda: len(client.of(ResponseAudio)) == len(said.split()) and (
        stages.of(Stage.TTS) if phase != "thinking" else stages.of(Stage.VOXTRAL)))
    if said:
        client.played(client.of(SpeechStarted)[0].turn_id, 20.0)  # both words played: 10 ms each
    await utter(client, stages)  # the user talks over the reply
    stopped = await client.wait_for(Interrupted)
    gate.set()
    second = await client.wait_for(TurnCompleted)
    await client.end()
    first_turn = client.of(SpeechStarted)[0].turn_id
    assert stopped.turn_id == first_turn and stopped.heard_text == said
    assert second.turn_id == client.of(SpeechStarted)[1].turn_id and second.heard_text == REPLY
    assert not client.of(ErrorEvent)
    first_calls = [c for c in stages.calls if c.args["turn_id"] == first_turn and c.what != "transcribe"]
    assert "cancelled" in {c.ended for c in first_calls} and "open" not in {c.ended for c in first_calls}
    assert await stored_context(client) == [(stages.transcript, said), (stages.transcript, REPLY)]


async def test_speech_after_a_finished_reply_interrupts_nothing(stages: FakeStages) -> None:
    client = Client(engine(stages))
    await utter(client, stages)
    await client.wait_for(TurnCompleted)
    await utter(client, stages)
    await client.wait_for(TurnCompleted, 2)
    await client.end()
    assert not client.of(Interrupted) and not client.of(ErrorEvent)


async def test_the_interrupt_control_stops_the_reply(stages: FakeStages) -> None:
    stages.tts.stall = asyncio.Event()
    client = Client(engine(stages))
    await utter(client, stages)
    await until(lambda: stages.of(Stage.TTS))
    client.control(Control.INTERRUPT)
    stopped = await client.wait_for(Interrupted)
    await client.end()
    assert stopped.heard_text == "" and not client.of(TurnCompleted)


async def test_a_vad_outage_is_one_error_and_the_stream_opens_again(stages: FakeStages,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vad_link, "VAD_RETRY_S", 0.0)  # every audio message may reopen the stream
    client = Client(engine(stages))
    await utter(client, stages)
    await client.wait_for(TurnCompleted)
    stages.vad_open_failures = 3
    stages.vad.fail("UNAVAILABLE")
    error = await client.wait_for(ErrorEvent)
    for _ in range(6):  # a microphone keeps sending while the VAD is down
        client.audio(20)
    await until(lambda: len(stages.streams) == 2)
    await utter(client, stages)
    await client.wait_for(TurnCompleted, 2)
    await client.end()
    assert error.code is Status.UNAVAILABLE and error.session_continues and error.message.startswith("vad failed")
    assert len(client.of(ErrorEvent)) == 1  # one error per outage, however often reopening failed
    assert stages.streams[0].cancelled


@pytest.mark.parametrize(("stage", "code", "after", "said"), [
    ("voxtral", "UNAVAILABLE", 1, "Paris is lovely today,"),  # Voxtral fails after its first clause
    ("tts", "DEADLINE_EXCEEDED", 2, "Paris is"),  # the first clause's synthesis fails two words in
])
async def test_a_stage_error_mid_reply_ends_the_turn_not_the_session(stage: str, code: str, after: int, said: str,
                                                                      stages: FakeStages) -> None:
    knobs = stages.voxtral if stage == "voxtral" else stages.tts
    knobs.fail_code, knobs.fail_after = code, after
    client = Client(engine(stages))
    await utter(client, stages)
    error = await client.wait_for(ErrorEvent)
    knobs.fail_code = ""
    await utter(client, stages)
    done = await client.wait_for(TurnCompleted)
    await client.end()
    assert error.code is Status(code) and error.session_continues
    assert error.turn_id == client.of(SpeechStarted)[0].turn_id and error.message.startswith(f"{stage} failed")
    assert done.heard_text == REPLY and len(client.of(TurnCompleted)) == 1
    assert await stored_context(client) == [(stages.transcript, said), (stages.transcript, REPLY)]


async def test_context_keeps_the_last_five_exchanges_in_order(stages: FakeStages) -> None:
    client = Client(engine(stages))
    for turn in range(7):
        stages.transcript = f"question {turn}"
        await utter(client, stages)
        await client.wait_for(TurnCompleted, turn + 1)
    await client.end()
    last = stages.histories[-1]
    assert [h.role for h in last] == ["user", "assistant"] * 5
    assert [h.text for h in last if h.role == "user"] == [f"question {n}" for n in range(1, 6)]
    assert [user for user, _ in await stored_context(client)] == [f"question {n}" for n in range(2, 7)]


async def test_a_late_transcript_holds_the_turn_record_not_the_reply(stages: FakeStages) -> None:
    gate = asyncio.Event()
    stages.transcribe_knobs.stall = gate
    client = Client(engine(stages))
    await utter(client, stages)
    await until(lambda: " ".join(a.text for a in client.of(ResponseAudio)) == REPLY)
    await until(lambda: bool(stages.of(Stage.VOXTRAL, "transcribe")))
    await asyncio.sleep(0.05)
    assert not client.of(TurnCompleted)  # the reply is all out; its record waits for the user's words
    gate.set()
    done = await client.wait_for(TurnCompleted)
    await client.end()
    assert done.user_text == stages.transcript and done.heard_text == REPLY


async def test_a_failed_transcription_keeps_the_exchange_with_the_words_marked_unknown(stages: FakeStages) -> None:
    from services.gateway.engine.memory import UNKNOWN_WORDS

    stages.transcribe_knobs.fail_code = "RESOURCE_EXHAUSTED"
    client = Client(engine(stages))
    await utter(client, stages)
    done = await client.wait_for(TurnCompleted)
    await utter(client, stages)
    await client.wait_for(TurnCompleted, count=2)
    await client.end()
    assert done.user_text == "" and done.heard_text == REPLY and not client.of(ErrorEvent)
    assert client.engine.metrics.value("voice_transcriptions_lost_total", code="RESOURCE_EXHAUSTED") == 2
    # The next reply is asked with the exchange in its context, the user's part marked unknown.
    assert [(t.role, t.text) for t in stages.histories[1]] == [("user", UNKNOWN_WORDS), ("assistant", REPLY)]
    stored = await client.engine.store.context(client.of(SessionStarted)[0].session_id)
    assert [(e.user, e.user_unknown) for e in stored] == [("", True), ("", True)]


@pytest.mark.parametrize("moment", ["thinking", "speaking", "transcribing"])
async def test_a_client_that_goes_away_leaves_no_task_and_no_call_open(moment: str, stages: FakeStages) -> None:
    before = asyncio.all_tasks()
    knobs = {"thinking": stages.voxtral, "speaking": stages.tts, "transcribing": stages.transcribe_knobs}[moment]
    knobs.stall = asyncio.Event()  # never set: the stage is busy when the client goes
    client = Client(engine(stages))
    await utter(client, stages)
    stage, what = {"thinking": (Stage.VOXTRAL, "respond"), "speaking": (Stage.TTS, "synthesize"),
                   "transcribing": (Stage.VOXTRAL, "transcribe")}[moment]
    await until(lambda: bool(stages.of(stage, what)))
    client.task.cancel()
    await asyncio.gather(client.task, return_exceptions=True)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()
    assert "open" not in {c.ended for c in stages.calls}
    assert stages.vad.cancelled and client.engine.sessions == 0


async def test_end_of_input_finishes_the_reply_in_flight(stages: FakeStages) -> None:
    stages.tts.delay_s = 0.002
    client = Client(engine(stages))
    await utter(client, stages)
    await client.wait_for(SpeechEnded)
    await client.end()
    assert client.of(TurnCompleted)[0].heard_text == REPLY


async def test_reset_context_forgets_the_exchanges(stages: FakeStages) -> None:
    client = Client(engine(stages))
    await utter(client, stages)
    await client.wait_for(TurnCompleted)
    client.control(Control.RESET_CONTEXT)
    await utter(client, stages)
    await client.wait_for(TurnCompleted, 2)
    await client.end()
    assert stages.histories[1] == []


async def test_a_second_config_and_unreadable_input_are_errors_and_the_session_goes_on(stages: FakeStages) -> None:
    from services.gateway.engine.inputs import Unreadable

    client = Client(engine(stages))
    client.send(SessionRequest(RATE))
    client.send(Unreadable("cannot read that frame"))
    await utter(client, stages)
    await client.wait_for(TurnCompleted)
    await client.end()
    errors = client.of(ErrorEvent)
    assert [e.code for e in errors] == [Status.INVALID_ARGUMENT] * 2 and all(e.session_continues for e in errors)
    assert "configured already" in errors[0].message and errors[1].message == "cannot read that frame"


async def test_sessions_beyond_the_limit_and_while_draining_are_refused(stages: FakeStages) -> None:
    from services.common.errors import ResourceExhausted, Status, Unavailable

    conversations = engine(stages, max_sessions=1)
    first = Client(conversations)
    await first.wait_for(SessionStarted)
    second = Client(conversations)
    with pytest.raises(ResourceExhausted, match="maximum of 1 sessions"):
        await second.task
    await conversations.drain(grace_s=1.0)
    farewell = await first.wait_for(ErrorEvent)
    assert farewell.code is Status.UNAVAILABLE and not farewell.session_continues
    with pytest.raises(Unavailable, match="shutting down"):
        await Client(conversations).task


async def test_speech_that_resumes_at_once_cancels_a_reply_that_never_ran(stages: FakeStages) -> None:
    client = Client(engine(stages))
    await utter(client, stages)
    stream = stages.vad
    stream.event(VadEventKind.STARTED, stream.received, stream.received)  # right behind ENDED: no loop turn between
    stopped = await client.wait_for(Interrupted)
    await until(lambda: bool(stages.of(Stage.VOXTRAL, "transcribe")))  # its words are still asked for
    await client.end()
    assert stopped.heard_text == "" and not client.of(ResponseAudio)
    assert await stored_context(client) == [(stages.transcript, "")]


async def test_each_clause_tells_the_tts_when_its_listener_needs_it(stages: FakeStages) -> None:
    client = Client(engine(stages))
    await utter(client, stages)
    await client.wait_for(TurnCompleted)
    await client.end()
    clauses = stages.of(Stage.TTS, "synthesize")
    assert len(clauses) >= 2 and not stages.of(Stage.VOXTRAL, "respond")[0].args["speculative"]
    assert clauses[0].args["need_in_ms"] == 0  # the first clause: now
    # A later one: when what the listener has will have played (the fake's audio is 10 ms a word).
    need = [c.args["need_in_ms"] for c in clauses]
    assert all(isinstance(n, int) and 0 <= n <= 10 * len(REPLY.split()) + 250 for n in need[1:])
    assert isinstance(need[1], int) and need[1] > 0  # asked for as soon as the first was made: needed later


async def test_a_client_that_sends_nothing_is_closed_with_the_reason(stages: FakeStages) -> None:
    from services.common.errors import DeadlineExceeded

    conversations = engine(stages, idle_timeout_s=0.3)
    talking = Client(conversations)
    quiet = Client(conversations)
    await quiet.wait_for(SessionStarted)
    for _ in range(8):  # a microphone's silence keeps a session
        talking.audio(60)
        await asyncio.sleep(0.06)
    farewell = await quiet.wait_for(ErrorEvent)
    await quiet.task
    assert farewell.code is Status.DEADLINE_EXCEEDED and not farewell.session_continues
    assert "nothing received for 0.3 s" in farewell.message
    assert not talking.task.done() and not talking.of(ErrorEvent)
    await talking.end()
    trickle = Client(conversations)
    await trickle.wait_for(SessionStarted)
    for _ in range(8):  # a sample now and then is bytes, not audio: it keeps nothing open
        trickle.send(Audio(b"\x00\x00"))
        await asyncio.sleep(0.06)
    assert "nothing received for 0.3 s" in (await trickle.wait_for(ErrorEvent)).message
    await trickle.task
    silent = Client(conversations, request=None)
    silent._inputs.get_nowait()  # not even a config
    with pytest.raises(DeadlineExceeded, match="nothing received"):
        await silent.task
    assert conversations.sessions == 0
