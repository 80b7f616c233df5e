"""Talking over a reply and starting before the turn has surely ended, on the fake stages: a
cough or a backchannel pauses the reply and it resumes where the listener stopped hearing it; a
sentence interrupts it; a confident pause starts the reply, held until speech-ended confirms it."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.engine.barge_in import is_backchannel
from services.gateway.engine.events import (
    Interrupted,
    ReplyPaused,
    ReplyResumed,
    ResponseAudio,
    ResponseText,
    SessionStarted,
    SpeechEnded,
    SpeechStarted,
    TurnCompleted,
)
from services.gateway.engine.inputs import SessionRequest
from services.gateway.engine.memory import CUT_OFF_MARK
from services.gateway.engine.reply import Reply
from services.gateway.engine.vocabulary import BargeInMode, Stage, VadEventKind
from tests.support.engine_client import RATE, Client, engine, reply_playing, speech, talks, until, utter
from tests.support.fake_stages import FakeStages

REPLY = "Paris is lovely today, you should go and walk by the river."


async def records(client: Client) -> tuple[list[tuple[str, str, bool]], list[dict]]:
    store = client.engine.store
    session_id = client.of(SessionStarted)[0].session_id
    context = [(e.user, e.assistant, e.cut_off) for e in await store.context(session_id)]
    return context, await store.turns(session_id)


@pytest.mark.parametrize(("sound", "voiced_ms", "words"), [
    ("a cough", 250, None),  # too little voice to be a turn: not even transcribed
    ("a backchannel", 900, "Mm-hm, yeah."),
    ("a sound with no words", 900, ""),
])
async def test_a_sound_that_is_no_turn_pauses_the_reply_and_it_resumes(sound: str, voiced_ms: int, words: str | None,
                                                                       stages: FakeStages) -> None:
    client = Client(engine(stages))
    first, gate = await reply_playing(client, stages)
    client.played(first, 20.0)
    start, end = speech(client, stages, 900)
    if words is not None:
        stages.heard_as[(end - start)] = words
    await stages.vad.heard(end)
    stages.vad.event(VadEventKind.STARTED, start, start)
    paused = await client.wait_for(ReplyPaused)
    stages.vad.event(VadEventKind.ENDED, start, end, voiced_ms=voiced_ms)
    resumed = await client.wait_for(ReplyResumed)
    gate.set()
    done = await client.wait_for(TurnCompleted)
    await client.end()
    assert paused.turn_id == resumed.turn_id == done.turn_id == first
    over = client.of(SpeechStarted)[-1].turn_id  # the sound's own id, named as dismissed: it gets no reply
    assert resumed.dismissed_turn_id == over != first
    assert paused.heard_ms == resumed.heard_ms  # resumes where the listener stopped hearing:
    assert 20.0 <= resumed.heard_ms <= 30.0  # the report, and play since it, up to the 3 words sent
    assert done.heard_text == REPLY and not client.of(Interrupted)
    assert len(stages.of(Stage.VOXTRAL, "respond")) == 1  # the sound was not answered
    judged = [c for c in stages.of(Stage.VOXTRAL, "transcribe") if c.args["samples"] == end - start]
    assert len(judged) == (0 if words is None else 1)
    audio = client.of(ResponseAudio)
    assert audio[3].offset_ms == resumed.heard_ms  # the audio after the resume starts there
    context, _ = await records(client)
    assert context == [(stages.transcript, REPLY, False)]


async def test_a_sentence_over_the_reply_interrupts_it_and_is_answered(stages: FakeStages) -> None:
    client = Client(engine(stages))
    first, gate = await reply_playing(client, stages)
    client.played(first, 20.0)
    start, end = speech(client, stages, 1500)
    stages.heard_as[end - start] = "wait, tell me about Rome instead"
    await stages.vad.heard(end)
    stages.vad.event(VadEventKind.STARTED, start, start)
    await client.wait_for(ReplyPaused)
    stages.vad.event(VadEventKind.ENDED, start, end)
    stopped = await client.wait_for(Interrupted)
    gate.set()
    second = await client.wait_for(TurnCompleted)
    await utter(client, stages)
    await client.wait_for(TurnCompleted, 2)
    await client.end()
    # Heard: the 20 ms reported, and play since the report, up to the 3 words (10 ms each) sent.
    assert stopped.turn_id == first and 20.0 <= stopped.heard_ms <= 30.0
    heard = " ".join(REPLY.split()[: int(stopped.heard_ms // 10)])
    assert stopped.heard_text == heard
    assert second.turn_id == client.of(SpeechStarted)[1].turn_id and second.heard_text == REPLY
    assert not client.of(ReplyResumed)
    context, turns = await records(client)
    assert context[0][1:] == (heard, True)  # what was heard, marked as cut off
    assert [t["outcome"] for t in turns] == ["interrupted", "completed", "completed"]
    assert stages.histories[-1][1].text == heard + CUT_OFF_MARK  # Voxtral is told it was cut off


async def test_speech_that_goes_on_interrupts_without_waiting_for_its_end(stages: FakeStages) -> None:
    client = Client(engine(stages, barge_in_timeout_ms=100))
    first, gate = await reply_playing(client, stages)
    start, end = await talks(client, stages, 400)
    stopped = await client.wait_for(Interrupted)
    gate.set()
    stages.vad.event(VadEventKind.ENDED, start, end + client.audio(1000))
    await client.wait_for(TurnCompleted)
    await client.end()
    assert stopped.turn_id == first
    assert client.events.index(client.of(ReplyPaused)[0]) < client.events.index(stopped)


async def test_a_sound_that_stopped_waits_for_a_late_judgement_past_the_timeout(stages: FakeStages) -> None:
    # The VAD's end-of-turn model is slow (a loaded host): the "mm" is over, but its PAUSED comes
    # after the timeout. Quiet input is no speech going on: the judgement is awaited and it resumes.
    client = Client(engine(stages, barge_in_timeout_ms=1000))
    first, gate = await reply_playing(client, stages)
    start, pause = await talks(client, stages, 300)
    quiet = pause + client.audio(600, amplitude=0)
    await stages.vad.heard(quiet)
    await asyncio.sleep(1.3)  # past the timeout, within the second one the quiet input earns
    stages.vad.event(VadEventKind.PAUSED, start, pause, voiced_ms=250)
    resumed = await client.wait_for(ReplyResumed)
    gate.set()
    await client.wait_for(TurnCompleted)
    await client.end()
    assert resumed.turn_id == first and not client.of(Interrupted)


async def test_a_sound_that_stopped_and_is_never_judged_interrupts_after_a_second_timeout(
        stages: FakeStages) -> None:
    client = Client(engine(stages, barge_in_timeout_ms=100))
    first, gate = await reply_playing(client, stages)
    start, pause = await talks(client, stages, 300)
    client.audio(600, amplitude=0)
    stopped = await client.wait_for(Interrupted)  # the VAD said nothing: taken as a turn, not held forever
    gate.set()
    stages.vad.event(VadEventKind.ENDED, start, pause)
    await client.wait_for(TurnCompleted)
    await client.end()
    assert stopped.turn_id == first


async def test_a_backchannel_that_goes_on_is_judged_again(stages: FakeStages) -> None:
    client = Client(engine(stages))
    first, gate = await reply_playing(client, stages)
    start, pause = await talks(client, stages, 400)
    stages.vad.event(VadEventKind.PAUSED, start, pause, voiced_ms=300)
    await client.wait_for(ReplyResumed)
    end = pause + client.audio(1500)
    await stages.vad.heard(end)
    stages.vad.event(VadEventKind.RESUMED, start, pause)
    await client.wait_for(ReplyPaused, 2)
    stages.vad.event(VadEventKind.ENDED, start, end)
    stopped = await client.wait_for(Interrupted)
    gate.set()
    await client.wait_for(TurnCompleted)
    await client.end()
    assert stopped.turn_id == first
    assert stages.of(Stage.VOXTRAL, "respond")[1].args["samples"] == end - start  # the whole utterance


async def test_off_any_speech_cancels_the_reply_at_once(stages: FakeStages) -> None:
    client = Client(engine(stages, barge_in_reversible=False))
    first, gate = await reply_playing(client, stages)
    start, end = await talks(client, stages, 300)
    stopped = await client.wait_for(Interrupted)
    gate.set()
    await client.end()
    assert stopped.turn_id == first and not client.of(ReplyPaused)


async def test_a_confident_pause_starts_the_reply_and_speech_ended_releases_it(stages: FakeStages) -> None:
    client = Client(engine(stages))
    await client.wait_for(SessionStarted)
    await until(lambda: stages.streams)
    start, end = await talks(client, stages, 1000)
    stages.vad.event(VadEventKind.PAUSED, start, end, probability=0.8)
    await until(lambda: stages.of(Stage.TTS))  # Voxtral answered and the first clause is synthesised...
    await asyncio.sleep(0.05)
    assert not client.of(ResponseText) and not client.of(ResponseAudio)  # ...but nothing is out yet
    client.audio(300)  # silence, as the VAD decides
    stages.vad.event(VadEventKind.ENDED, start, end, probability=0.95)
    done = await client.wait_for(TurnCompleted)
    await client.end()
    assert done.heard_text == REPLY and len(stages.of(Stage.VOXTRAL, "respond")) == 1
    assert stages.of(Stage.VOXTRAL, "respond")[0].args["speculative"]  # queued after replies a listener waits for
    _, turns = await records(client)
    assert turns[0]["speculation"] == "used" and turns[0]["end_of_turn_probability"] == 0.95


async def test_a_speculation_the_user_talks_past_is_cancelled_unseen(stages: FakeStages) -> None:
    client = Client(engine(stages))
    await client.wait_for(SessionStarted)
    await until(lambda: stages.streams)
    gate = asyncio.Event()
    stages.voxtral.stall, stages.voxtral.stall_after = gate, 1  # the speculation is still thinking
    start, pause = await talks(client, stages, 800)
    stages.vad.event(VadEventKind.PAUSED, start, pause, probability=0.6)
    await until(lambda: stages.of(Stage.VOXTRAL, "respond"))
    end = pause + client.audio(700)
    await stages.vad.heard(end)
    stages.vad.event(VadEventKind.RESUMED, start, pause)
    await until(lambda: stages.of(Stage.VOXTRAL, "respond")[0].ended == "cancelled")
    stages.voxtral.stall = None
    stages.vad.event(VadEventKind.ENDED, start, end, probability=0.97)
    done = await client.wait_for(TurnCompleted)
    await client.end()
    responds = stages.of(Stage.VOXTRAL, "respond")
    assert [c.args["samples"] for c in responds] == [pause - start, end - start]
    assert done.heard_text == REPLY and len(client.of(TurnCompleted)) == 1
    assert "".join(e.delta for e in client.of(ResponseText)) == REPLY  # the wasted reply's text never went out
    assert len(stages.of(Stage.VOXTRAL, "transcribe")) == 1  # nor was it transcribed or remembered
    context, turns = await records(client)
    assert len(context) == 1 and turns[0]["speculation"] == "none"


@pytest.mark.parametrize(("probability", "speculate"), [(0.1, True), (0.8, False)])
async def test_no_speculation_below_the_probability_or_when_off(probability: float, speculate: bool,
                                                                stages: FakeStages) -> None:
    client = Client(engine(stages, speculate=speculate))
    await client.wait_for(SessionStarted)
    await until(lambda: stages.streams)
    start, end = await talks(client, stages, 600)
    stages.vad.event(VadEventKind.PAUSED, start, end, probability=probability)
    await asyncio.sleep(0.05)
    assert not stages.of(Stage.VOXTRAL, "respond")
    stages.vad.event(VadEventKind.ENDED, start, end, probability=0.95)
    await client.wait_for(TurnCompleted)
    await client.end()


async def test_a_playback_report_is_what_the_context_keeps(stages: FakeStages) -> None:
    client = Client(engine(stages, reply_lead_ms=5000))  # everything is sent at once
    first, gate = await reply_playing(client, stages)
    start, end = await talks(client, stages, 1500)
    await client.wait_for(ReplyPaused)
    client.played(first, 10.0)  # the client stopped playing at reply_paused, one word in
    await until(lambda: client.engine.sessions == 1)
    stages.vad.event(VadEventKind.ENDED, start, end)
    stopped = await client.wait_for(Interrupted)
    gate.set()
    await client.wait_for(TurnCompleted)
    await client.end()
    assert stopped.heard_text == "Paris" and stopped.heard_ms == 10.0
    context, _ = await records(client)
    assert context[0][1:] == ("Paris", True)


@pytest.mark.parametrize(("words", "expected"), [
    ("", True), ("Mm-hm.", True), ("Yeah, okay!", True), ("uh huh", True), ("I see.", True),
    ("Okay, but what about Rome?", False), ("No.", False), ("yeah I think so", False),
])
def test_backchannels(words: str, expected: bool) -> None:
    from services.gateway.config import GatewaySettings

    assert is_backchannel(words, GatewaySettings(auth_disabled=True).backchannels) is expected


def test_rate() -> None:
    assert RATE == 16000  # the fake VAD's voiced_ms default assumes it


async def test_a_session_that_cancels_on_speech_stops_the_reply_as_speech_starts(stages: FakeStages) -> None:
    client = Client(engine(stages), SessionRequest(RATE, barge_in=BargeInMode.CANCEL))
    first, gate = await reply_playing(client, stages)
    start, end = await talks(client, stages, 300)
    stopped = await client.wait_for(Interrupted)  # before the speech has ended: nothing judged
    gate.set()
    assert stopped.turn_id == first and not client.of(ReplyPaused) and len(client.of(SpeechEnded)) == 1
    stages.vad.event(VadEventKind.ENDED, start, end)
    second = await client.wait_for(TurnCompleted)
    await client.end()
    assert second.turn_id == client.of(SpeechStarted)[1].turn_id


async def test_a_session_with_barge_in_off_plays_on_until_the_speech_is_a_turn(stages: FakeStages) -> None:
    client = Client(engine(stages), SessionRequest(RATE, barge_in=BargeInMode.OFF))
    first, gate = await reply_playing(client, stages)
    start, end = await talks(client, stages, 300)
    await client.wait_for(SpeechStarted, 2)
    assert not client.of(ReplyPaused) and not client.of(Interrupted)  # the reply goes on over the speech
    stages.vad.event(VadEventKind.ENDED, start, end)
    stopped = await client.wait_for(Interrupted)  # the speech was a turn: its reply replaces the first
    gate.set()
    second = await client.wait_for(TurnCompleted)
    await client.end()
    assert stopped.turn_id == first and second.turn_id == client.of(SpeechStarted)[1].turn_id
    assert len([e for e in client.of(TurnCompleted) if e.turn_id == first]) == 0  # one reply at a time


async def test_a_playback_report_after_a_cancel_still_sets_what_is_kept(stages: FakeStages) -> None:
    # A Realtime client truncates on speech_started, which the cancel may already have answered.
    held = asyncio.Event()
    stages.transcribe_knobs.stall = held  # the exchange is kept once the user's words are known
    client = Client(engine(stages), SessionRequest(RATE, barge_in=BargeInMode.CANCEL))
    first, gate = await reply_playing(client, stages)
    start, end = await talks(client, stages, 300)
    await client.wait_for(Interrupted)
    client.played(first, 10.0)  # the client had played one word of it
    await stages.vad.heard(end + client.audio(20))  # inputs are taken in order: the report is in
    held.set()
    gate.set()
    stages.vad.event(VadEventKind.ENDED, start, end)
    await client.wait_for(TurnCompleted)
    await client.end()
    context, _ = await records(client)
    assert context[0][1:] == ("Paris", True)


async def test_a_playback_report_after_the_exchange_is_kept_revises_it(stages: FakeStages) -> None:
    client = Client(engine(stages), SessionRequest(RATE, barge_in=BargeInMode.CANCEL))
    first, gate = await reply_playing(client, stages)
    await talks(client, stages, 300)
    await client.wait_for(Interrupted)
    session_id = client.of(SessionStarted)[0].session_id
    await until(lambda: bool(client.engine.store.sessions[session_id].context))  # type: ignore[attr-defined]
    client.played(first, 10.0)  # the client's truncate, late
    await until(lambda: client.engine.store.sessions[session_id].context[0].assistant == "Paris")  # type: ignore[attr-defined]
    gate.set()
    await client.end()
    assert [(e.assistant, e.cut_off) for e in await client.engine.store.context(session_id)] == [("Paris", True)]


async def test_a_playback_report_while_the_reply_is_being_stopped_sets_what_is_kept(
        stages: FakeStages, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client's truncate may come while the cancelled reply's tasks are still winding down.
    stopping, let_go = asyncio.Event(), asyncio.Event()
    stop = Reply.stop

    async def slow_stop(reply: Reply) -> None:
        await stop(reply)
        stopping.set()
        await let_go.wait()

    monkeypatch.setattr(Reply, "stop", slow_stop)
    client = Client(engine(stages), SessionRequest(RATE, barge_in=BargeInMode.CANCEL))
    first, gate = await reply_playing(client, stages)
    start, end = await talks(client, stages, 300)
    await stopping.wait()
    client.played(first, 10.0)  # the client had played one word of it
    await stages.vad.heard(end + client.audio(20))  # inputs are taken in order: the report is in
    let_go.set()
    stopped = await client.wait_for(Interrupted)
    gate.set()
    stages.vad.event(VadEventKind.ENDED, start, end)
    await client.wait_for(TurnCompleted)
    await client.end()
    assert (stopped.heard_text, stopped.heard_ms) == ("Paris", 10.0)
    context, _ = await records(client)
    assert context[0][1:] == ("Paris", True)
