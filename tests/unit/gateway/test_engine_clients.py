"""The engine's rules about clients, on the fake stages and a real Redis: one live holder per
session, resumes by the creator only, a session limit per client, and a client that stops reading
closed with its session freed."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import FailedPrecondition, PermissionDenied, ResourceExhausted
from services.gateway.engine.caller import Caller
from services.gateway.engine.ends import Stalled
from services.gateway.engine.events import Event, SessionStarted
from services.gateway.engine.inputs import SessionRequest
from services.gateway.engine.vocabulary import Stage
from tests.support.engine_client import RATE, Client, engine, until, utter
from tests.support.fake_stages import FakeStages

ALICE = Caller("key-alice", "10.0.0.1")
BOB = Caller("key-bob", "10.0.0.1")


async def test_a_session_has_one_holder_and_only_its_creator_resumes_it(stages: FakeStages) -> None:
    conversations = engine(stages)
    first = Client(conversations, caller=ALICE)
    session_id = (await first.wait_for(SessionStarted)).session_id
    with pytest.raises(FailedPrecondition, match="live on another connection"):
        await Client(conversations, SessionRequest(RATE, resume_id=session_id), caller=ALICE).task
    with pytest.raises(PermissionDenied, match="another API key"):
        await Client(conversations, SessionRequest(RATE, resume_id=session_id), caller=BOB).task
    await first.end()
    again = Client(conversations, SessionRequest(RATE, resume_id=session_id), caller=Caller(ALICE.identity, "10.9.9.9"))
    started = await again.wait_for(SessionStarted)  # the same key from another address: its creator
    assert started.resumed and started.session_id == session_id
    await again.end()


async def test_one_key_has_a_session_limit_from_any_address_that_others_do_not_share(
        stages: FakeStages) -> None:
    conversations = engine(stages, max_sessions_per_client=2)
    mine = [Client(conversations, caller=Caller(ALICE.identity, f"10.0.0.{n}")) for n in (1, 2)]
    for client in mine:
        await client.wait_for(SessionStarted)
    for address in ("10.0.0.1", "10.0.0.3"):  # the key's limit, whatever address it comes from
        with pytest.raises(ResourceExhausted, match="this client"):
            await Client(conversations, caller=Caller(ALICE.identity, address)).task
    other_key = Client(conversations, caller=BOB)
    await other_key.wait_for(SessionStarted)
    await mine[0].end()
    freed = Client(conversations, caller=ALICE)
    await freed.wait_for(SessionStarted)
    for client in (mine[1], other_key, freed):
        await client.end()
    assert conversations.sessions == 0


async def test_one_address_has_a_session_limit_whatever_its_keys(stages: FakeStages) -> None:
    conversations = engine(stages, max_sessions_per_address=2)
    held = [Client(conversations, caller=Caller(key, "10.0.0.9")) for key in ("key-a", "open")]
    for client in held:
        await client.wait_for(SessionStarted)
    for key in ("key-c", "open"):  # another key, or keys off: the address is full
        with pytest.raises(ResourceExhausted, match="address '10.0.0.9'"):
            await Client(conversations, caller=Caller(key, "10.0.0.9")).task
    elsewhere = Client(conversations, caller=Caller("key-c", "10.0.0.10"))
    await elsewhere.wait_for(SessionStarted)
    for client in (*held, elsewhere):
        await client.end()
    assert conversations.sessions == 0


class Deaf(Client):
    """Reads its session_started, then nothing: every later write waits forever."""

    async def _send(self, event: Event) -> None:
        if self.events:
            await asyncio.Event().wait()
        await super()._send(event)


async def test_a_client_that_stops_reading_is_closed_and_its_work_stopped(stages: FakeStages) -> None:
    conversations = engine(stages, write_timeout_s=0.2)
    deaf = Deaf(conversations)
    await utter(deaf, stages)  # its reply cannot be delivered
    with pytest.raises(Stalled, match="could be delivered for 0.2 s"):
        await asyncio.wait_for(deaf.task, 5)
    assert conversations.sessions == 0
    await until(lambda: all(call.ended != "open" for call in stages.calls))


async def test_manual_turns_are_the_audio_between_commits(stages: FakeStages) -> None:
    from services.gateway.engine.events import ErrorEvent, SpeechEnded, TurnCompleted
    from services.gateway.engine.inputs import ClearAudio, Commit, Update

    client = Client(engine(stages), SessionRequest(RATE, manual_turns=True))
    await client.wait_for(SessionStarted)
    client.audio(300)
    client.send(ClearAudio())  # dropped: the turn starts after it
    client.send(Commit())  # nothing since the clear
    await client.wait_for(ErrorEvent)
    assert "nothing to commit" in client.of(ErrorEvent)[0].message and client.of(ErrorEvent)[0].session_continues
    samples = client.audio(800)
    client.send(Update(instructions="Answer in one word."))
    client.send(Commit())
    ended = await client.wait_for(SpeechEnded)
    assert (ended.start_sample, ended.end_sample) == (RATE * 300 // 1000, RATE * 300 // 1000 + samples)
    await client.wait_for(TurnCompleted)
    assert not stages.streams  # no VAD stream at all
    respond = stages.of(Stage.VOXTRAL, "respond")[0]
    assert respond.args["instructions"] == "Answer in one word."
    await client.end()


async def test_a_session_can_set_the_end_of_turn_fallback_of_its_vad_stream(stages: FakeStages) -> None:
    from services.common.errors import InvalidArgument

    client = Client(engine(stages), SessionRequest(RATE, end_of_turn_fallback_ms=8000))
    await client.wait_for(SessionStarted)
    await until(lambda: bool(stages.vad_opens))
    assert stages.vad_opens[0]["fallback_ms"] == 8000
    await client.end()
    with pytest.raises(InvalidArgument, match="end_of_turn_fallback_ms=50 is out of range: use 200 to 10000"):
        await Client(engine(stages), SessionRequest(RATE, end_of_turn_fallback_ms=50)).task


async def test_a_session_can_choose_the_end_of_turn_detector_of_its_vad_stream(stages: FakeStages) -> None:
    from services.gateway.engine.vocabulary import Detector
    from services.gateway.messages import session_request
    from voice.v1 import gateway_pb2, vad_pb2

    request = session_request(gateway_pb2.SessionConfig(
        input_sample_rate_hz=RATE, end_of_turn_detector=vad_pb2.END_OF_TURN_DETECTOR_SILENCE))
    assert request.end_of_turn_detector is Detector.SILENCE
    assert session_request(gateway_pb2.SessionConfig(input_sample_rate_hz=RATE)).end_of_turn_detector is None
    client = Client(engine(stages), request)
    await client.wait_for(SessionStarted)
    await until(lambda: bool(stages.vad_opens))
    await client.end()
    assert stages.vad_opens[0]["detector"] is Detector.SILENCE


class SlowToAck(Client):
    """Its transport takes a while to report each event written (the client has it already)."""

    async def _send(self, event: Event) -> None:
        await super()._send(event)
        await asyncio.sleep(0.05)


async def test_draining_right_after_speech_ended_still_answers_that_turn(stages: FakeStages) -> None:
    from services.gateway.engine.events import ErrorEvent, SpeechEnded, TurnCompleted

    conversations = engine(stages)
    client = SlowToAck(conversations)
    await utter(client, stages)
    await client.wait_for(SpeechEnded)  # the client has it; the engine is still setting the turn up
    drained = asyncio.ensure_future(conversations.drain(grace_s=5.0))
    done = await client.wait_for(TurnCompleted)
    farewell = await client.wait_for(ErrorEvent)
    await drained
    assert done.heard_text and not farewell.session_continues
    assert client.events.index(done) < client.events.index(farewell)
