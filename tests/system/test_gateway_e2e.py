"""The whole loop with every service a real process: real gRPC, real Redis, the small Voxtral,
the real Kokoro ONNX, speech made by espeak-ng."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import grpc
import numpy as np
import pytest
import redis

from harness.conversation import ENDS_TURN_MS, Conversation
from harness.stack import Stack
from services.common.latency import METRICS
from tests.support.speech import open_session, say
from voice.v1 import gateway_pb2

pytestmark = pytest.mark.asyncio(loop_scope="module")
QUESTIONS = ("What is the weather like today?", "Tell me a joke please.", "How far away is the moon?",
             "Can you help me cook dinner?", "Which train goes to the city?", "Thank you, that is all.")
converse = open_session


async def ask(conv: Conversation, text: str, turn: int, pace: float = 0.0) -> gateway_pb2.TurnCompleted:
    await conv.silence(300)
    await conv.send(say(text))
    await conv.silence(ENDS_TURN_MS, pace=pace)
    return await conv.wait_for("turn_completed", turn)


def context_of(stack: Stack, session_id: str) -> list[dict]:
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    return [json.loads(x) for x in client.lrange(f"voice:session:{session_id}:context", 0, -1)]


async def test_a_question_gets_a_spoken_answer_with_consistent_metrics(gateway, stack: Stack) -> None:
    conv = converse(gateway, output_sample_rate_hz=16000)
    done = await ask(conv, QUESTIONS[0], 1, pace=1.0)  # the silence after the question in real time
    await conv.finish()
    assert conv.error is None
    started = conv.of("session_started")[0]
    assert len(started.session_id) == 32 and not started.resumed
    ended = conv.of("speech_ended")[0]
    assert ended.turn_id == done.turn_id and ended.end_sample > ended.start_sample
    text = "".join(e.delta for e in conv.of("response_text") if e.turn_id == done.turn_id)
    audio = [e for e in conv.of("response_audio") if e.turn_id == done.turn_id]
    assert text.strip() and audio and all(a.sample_rate_hz == 16000 for a in audio)
    pcm = np.frombuffer(b"".join(a.audio for a in audio), dtype="<i2")
    assert len(pcm) > 16000 * 0.3 and np.abs(pcm).max() > 1000  # real speech, not silence
    assert done.heard_text == " ".join(a.text for a in audio if a.text)  # each clause's first piece
    assert done.heard_text.replace(" ", "") == text.replace(" ", "")
    m = done.metrics
    assert all(getattr(m, name) > 0 for name in METRICS if name != "overhead_ms"), m
    assert m.first_audible_ms >= m.e2e_ms
    assert m.first_clause_ms >= m.voxtral_ttft_ms
    if not done.speculative:  # a speculative reply's stage times began before speech-ended
        assert m.e2e_ms >= m.tts_ttfb_ms and m.e2e_ms >= m.first_clause_ms
    assert m.turn_ms >= m.e2e_ms >= m.overhead_ms
    assert m.endpoint_ms >= 700  # the seed's 800 ms of end silence, waited for in real time
    kinds = [k for k, _ in conv.events]
    assert kinds.index("speech_started") < kinds.index("speech_ended") < kinds.index("response_text") \
        < kinds.index("response_audio") < kinds.index("turn_completed")


async def test_six_turns_keep_the_last_five_exchanges_and_a_resumed_session_gets_them(gateway, stack) -> None:
    conv = converse(gateway)
    for i, question in enumerate(QUESTIONS, 1):
        await ask(conv, question, i)
    await conv.finish()
    session_id = conv.of("session_started")[0].session_id
    turns = conv.of("turn_completed")
    assert len(turns) == 6 and len({t.turn_id for t in turns}) == 6
    stored = context_of(stack, session_id)
    assert [x["turn_id"] for x in stored] == [t.turn_id for t in turns[1:]]
    assert [x["assistant"] for x in stored] == [t.heard_text for t in turns[1:]]

    metrics = await gateway.GetSessionMetrics(gateway_pb2.GetSessionMetricsRequest(session_id=session_id), timeout=5)
    assert metrics.turns == 6
    by_name = {s.metric: s for s in metrics.stages}
    assert set(by_name) == set(METRICS)
    assert all(s.samples == 6 and s.p95_ms >= s.p50_ms > 0 for s in by_name.values())

    resumed = converse(gateway, session_id=session_id)
    await resumed.wait_for("session_started")
    await resumed.finish()
    start = resumed.of("session_started")[0]
    assert start.resumed and start.session_id == session_id and start.context_exchanges == 5


async def test_a_session_chooses_what_ends_its_turns(gateway) -> None:
    """The fixed-silence detector, chosen per session, reaches the VAD: its turns end on the silence
    alone (no end-of-turn probability); the default Smart Turn says its probability."""
    from voice.v1 import vad_pb2

    silence = converse(gateway, end_of_turn_detector=vad_pb2.END_OF_TURN_DETECTOR_SILENCE, end_silence_ms=400)
    model = converse(gateway)
    for conv in (silence, model):
        await ask(conv, QUESTIONS[2], 1, pace=1.0)  # in real time: the model answers as the silence grows
        await conv.finish()
        assert conv.error is None
    assert not silence.of("speech_ended")[0].HasField("end_of_turn_probability")
    assert model.of("speech_ended")[0].HasField("end_of_turn_probability")


async def test_unknown_session_id_is_refused(gateway) -> None:
    conv = converse(gateway, session_id="0" * 32)
    await conv.wait_for("closed")  # refused at once, before any audio
    assert conv.error is not None and conv.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown or has expired" in conv.error.details()


async def test_barge_in_stops_the_reply_and_keeps_only_what_was_heard(gateway, stack) -> None:
    conv = converse(gateway, listen=True)
    await conv.silence(300)
    await conv.send(say(QUESTIONS[2]))
    await conv.silence(ENDS_TURN_MS)
    first_audio = await conv.wait_for("response_audio")
    await conv.silence(700, pace=1.0)  # the reply plays for a while
    await conv.send(say(QUESTIONS[3]), pace=1.0)  # then the user talks over it
    interrupted = await conv.wait_for("interrupted")
    await conv.silence(ENDS_TURN_MS)
    await conv.wait_for("turn_completed")
    await conv.finish()
    assert interrupted.turn_id == first_audio.turn_id
    kinds = [(k, getattr(e, "turn_id", "")) for k, e in conv.events]
    paused, cut = kinds.index(("reply_paused", interrupted.turn_id)), kinds.index(("interrupted", interrupted.turn_id))
    assert paused < cut and ("response_audio", interrupted.turn_id) not in kinds[paused:]
    full = "".join(e.delta for e in conv.of("response_text") if e.turn_id == interrupted.turn_id).split()
    heard = interrupted.heard_text.split()
    assert heard and heard == full[:len(heard)] and len(heard) < len(full)  # the words heard, no more
    assert conv.listener is not None
    played = sum(p.samples for p in conv.listener.log if p.turn_id == interrupted.turn_id) / first_audio.sample_rate_hz
    assert abs(interrupted.heard_ms / 1000 - played) < 0.25  # the gateway knows what the client played
    await asyncio.sleep(1.0)  # the interrupted exchange is stored once its transcript is in
    stored = {x["turn_id"]: x for x in context_of(stack, conv.of("session_started")[0].session_id)}
    assert stored[interrupted.turn_id]["assistant"] == interrupted.heard_text
    assert stored[interrupted.turn_id]["cut_off"] is True


async def test_a_playback_report_is_what_the_context_keeps(gateway, stack) -> None:
    """A client whose playback lagged (it had played 300 ms when it paused) says so: the context
    keeps what it played, not what the gateway's clock would have guessed."""
    conv = converse(gateway)
    await conv.silence(300)
    await conv.send(say(QUESTIONS[2]))
    await conv.silence(ENDS_TURN_MS)
    first_audio = await conv.wait_for("response_audio")
    await conv.silence(1200, pace=1.0)  # by the clock the listener has heard 1.2 s of it by now
    await conv.send(say(QUESTIONS[3]), pace=1.0)
    paused = await conv.wait_for("reply_paused")
    await conv.raw(gateway_pb2.ConverseRequest(playback=gateway_pb2.PlaybackReport(
        turn_id=paused.turn_id, played_ms=300.0)))
    interrupted = await conv.wait_for("interrupted")
    await conv.silence(ENDS_TURN_MS)
    await conv.wait_for("turn_completed")
    await conv.finish()
    assert paused.turn_id == interrupted.turn_id == first_audio.turn_id
    assert paused.heard_ms > 300.0 and interrupted.heard_ms == 300.0  # the report, not the clock
    words = [e.text for e in conv.of("response_audio") if e.turn_id == interrupted.turn_id and e.text]
    assert len(interrupted.heard_text.split()) <= len(words[0].split())  # at most the first clause
    await asyncio.sleep(1.0)  # the interrupted exchange is stored once its transcript is in
    stored = {x["turn_id"]: x for x in context_of(stack, conv.of("session_started")[0].session_id)}
    assert stored[interrupted.turn_id]["assistant"] == interrupted.heard_text
    assert stored[interrupted.turn_id]["cut_off"] is True


async def test_tts_killed_mid_turn_gives_an_error_and_the_next_turn_works(gateway, stack) -> None:
    conv = converse(gateway)
    await conv.silence(300)
    await conv.send(say(QUESTIONS[4]))
    stack.services["tts"].kill()
    await conv.silence(ENDS_TURN_MS)
    error = await conv.wait_for("error")
    assert error.code == gateway_pb2.ERROR_CODE_UNAVAILABLE and error.session_continues and error.turn_id
    assert "tts" in error.message
    await asyncio.to_thread(stack.restart, "tts")
    done = await ask(conv, QUESTIONS[5], 1)
    await conv.finish()
    assert conv.error is None and done.heard_text
    assert [e for e in conv.of("response_audio") if e.turn_id == done.turn_id]


async def test_prometheus_histograms_use_the_metric_names(gateway, stack) -> None:
    body = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).read().decode()
    for name in METRICS:
        assert f"voice_{name}_count" in body
    count = next(line for line in body.splitlines() if line.startswith("voice_e2e_ms_count"))
    assert float(count.split()[-1]) >= 1
    assert "voice_turns_total" in body


async def test_a_client_that_vanishes_mid_turn_leaves_nothing_behind(gateway, stack) -> None:
    conv = converse(gateway)
    await conv.silence(300)
    await conv.send(say(QUESTIONS[1]))
    await conv.silence(ENDS_TURN_MS)
    await conv.wait_for("response_text")
    conv.cancel()
    await asyncio.sleep(1.0)
    body = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).read().decode()
    assert "voice_sessions_active 0.0" in body
    again = converse(gateway)
    assert (await ask(again, QUESTIONS[1], 1)).heard_text
    await again.finish()
