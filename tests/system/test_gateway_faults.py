"""Faults with real processes: a stage killed or stalled mid-turn, Redis gone and back, and a
gateway told to stop while it is busy. Each time the session stays open (or ends cleanly) and
the next turn works once the part is back."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.conversation import ENDS_TURN_MS, Conversation
from harness.stack import Stack
from tests.support.speech import open_session, say
from voice.v1 import gateway_pb2

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def ask(conv: Conversation, text: str, count: int, pace: float = 0.0) -> gateway_pb2.TurnCompleted:
    await conv.silence(300, pace=pace)
    await conv.send(say(text), pace=pace)
    await conv.silence(ENDS_TURN_MS, pace=pace)
    return await conv.wait_for("turn_completed", count)


@pytest.mark.parametrize(("stage", "after"), [("vad", "speech_started"), ("voxtral", "speech_started")])
async def test_stage_killed_mid_turn_then_back(gateway, faulty_stack: Stack, stage: str, after: str) -> None:
    conv = open_session(gateway)
    await conv.silence(300, pace=1.0)
    sending = asyncio.ensure_future(conv.send(say("Please tell me something about the weather."), pace=1.0))
    await conv.wait_for(after)
    faulty_stack.services[stage].kill()
    await sending
    await conv.silence(ENDS_TURN_MS, pace=1.0)
    error = await conv.wait_for("error")
    assert error.code == gateway_pb2.ERROR_CODE_UNAVAILABLE and error.session_continues
    assert error.message.startswith(f"{stage} failed")
    await asyncio.to_thread(faulty_stack.restart, stage)
    await conv.silence(2000, pace=1.0)  # a microphone keeps sending; the gateway reopens its VAD stream
    done = await ask(conv, "Are you back again?", 1, pace=1.0)
    await conv.finish()
    assert conv.error is None and done.heard_text


async def test_stalled_stage_gives_a_deadline_error_and_the_session_goes_on(gateway, faulty_stack: Stack) -> None:
    tts = faulty_stack.services["tts"].proc
    conv = open_session(gateway)
    await conv.silence(300)
    await conv.send(say("Are you still there?"))
    await conv.wait_for("speech_started")
    tts.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        await conv.silence(ENDS_TURN_MS)
        error = await conv.wait_for("error", timeout=60)
    finally:
        tts.send_signal(signal.SIGCONT)
    assert error.code == gateway_pb2.ERROR_CODE_DEADLINE_EXCEEDED and error.session_continues and error.turn_id
    done = await ask(conv, "Now answer me.", 1)
    await conv.finish()
    assert done.heard_text


def store_failures(stack: Stack) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith("voice_store_failures_total{"))


async def test_without_redis_turns_go_on_and_writes_resume_when_it_is_back(gateway, faulty_stack: Stack) -> None:
    before = store_failures(faulty_stack)
    faulty_stack.redis.stop()
    try:
        conv = open_session(gateway)
        first = await ask(conv, "Do you remember me?", 1)
        assert first.heard_text and not conv.of("error")
        assert store_failures(faulty_stack) > before  # the loss is counted
        made_up = open_session(gateway, session_id="0" * 32)  # cannot be checked now: not accepted
        await made_up.wait_for("closed")
        assert made_up.error is not None and made_up.error.code() == grpc.StatusCode.UNAVAILABLE
        assert "cannot be checked now" in made_up.error.details()
    finally:
        faulty_stack.redis.start()  # same port, empty
    second = await ask(conv, "And now?", 2)
    await conv.finish()
    session_id = conv.of("session_started")[0].session_id
    resumed = open_session(gateway, session_id=session_id)  # its record was written again with its turn
    started = await resumed.wait_for("session_started")
    await resumed.finish()
    assert started.resumed and started.context_exchanges == 1
    client = redis.Redis.from_url(faulty_stack.redis.url, decode_responses=True)
    stored = [json.loads(x) for x in client.lrange(f"voice:session:{session_id}:context", 0, -1)]
    assert [x["turn_id"] for x in stored] == [second.turn_id]


async def test_sigterm_lets_the_turn_in_flight_finish_and_refuses_new_sessions(gateway, faulty_stack: Stack) -> None:
    async with grpc.aio.insecure_channel(faulty_stack.gateway) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        conv = open_session(gateway)
        await conv.silence(300)
        await conv.send(say("What happens when you stop?"))
        await conv.silence(ENDS_TURN_MS)
        await conv.wait_for("speech_ended")
        faulty_stack.services["gateway"].terminate()
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        late = open_session(gateway)
        await late.wait_for("closed")
        done = await conv.wait_for("turn_completed")
        farewell = await conv.wait_for("error")
        await conv.wait_for("closed")
    assert late.error is not None and late.error.code() == grpc.StatusCode.UNAVAILABLE
    assert done.heard_text and conv.error is None
    assert farewell.code == gateway_pb2.ERROR_CODE_UNAVAILABLE and not farewell.session_continues
    assert conv.of("session_started")[0].session_id in farewell.message
    assert faulty_stack.services["gateway"].proc.wait(30) == 0
    await asyncio.to_thread(faulty_stack.restart, "gateway")


async def test_more_turns_than_voxtral_can_queue_get_resource_exhausted(gateway, faulty_stack: Stack) -> None:
    await asyncio.to_thread(faulty_stack.reconfigure, "voxtral", VOXTRAL_MAX_QUEUE="0")
    question = say("What time is it now?")
    sessions = [open_session(gateway) for _ in range(6)]
    for conv in sessions:  # six people finish speaking at the same moment
        await conv.silence(300)
        await conv.send(question)
        await conv.silence(ENDS_TURN_MS)
    outcomes = await asyncio.gather(*(
        asyncio.wait({asyncio.ensure_future(c.wait_for("turn_completed")),
                      asyncio.ensure_future(c.wait_for("error"))}, return_when=asyncio.FIRST_COMPLETED)
        for c in sessions))
    assert len(outcomes) == 6
    errors = [e for c in sessions for e in c.of("error")]
    assert errors, "every turn found a free slot"
    busy = [e for e in errors if e.code == gateway_pb2.ERROR_CODE_RESOURCE_EXHAUSTED]
    assert busy and all("voxtral is busy" in e.message and e.session_continues for e in busy)
    assert any(c.of("turn_completed") for c in sessions)  # whoever got the slot was answered
    for conv in sessions:
        await conv.finish()
