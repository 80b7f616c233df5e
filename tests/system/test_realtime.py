"""The OpenAI Realtime-compatible endpoint, driven by the stock `openai` SDK (real processes, a real
recording): server VAD, manual commits, telephony audio, cancel, truncate, bad events, keys."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from openai import AsyncOpenAI

from harness.local_redis import RedisProcess
from harness.recordings import recording
from harness.stack import Stack
from services.common.audio import resample
from services.common.g711 import ulaw_encode
from tests.support.gateway_server import KEY, start
from tests.support.realtime_audio import speech
from tests.support.realtime_log import barge_ins, check_responses

pytestmark = pytest.mark.asyncio(loop_scope="module")
CHUNK_MS = 100
ROOT = Path(__file__).resolve().parents[2]


def connect(base: str, model: str = "voxtral", key: str = "unused") -> Any:
    """The SDK's connection manager; typed loosely, as tests send what the SDK's types forbid."""
    return AsyncOpenAI(api_key=key, websocket_base_url=base).realtime.connect(model=model)


def url(stack: Stack) -> str:
    return f"ws://127.0.0.1:{stack.web_port}/v1"


async def append(conn: Any, audio: bytes, bytes_per_ms: int) -> None:
    step = CHUNK_MS * bytes_per_ms
    for i in range(0, len(audio), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio[i:i + step]).decode())


async def events_until(conn: Any, last: str, limit: int = 4000) -> list[Any]:
    seen = []
    async for event in conn:
        seen.append(event)
        if event.type == last or len(seen) >= limit:
            break
    return seen


async def kept_context(stack: Stack, session_id: str) -> list[dict[str, Any]]:
    """The session's exchanges in Redis, once there is one (it is kept when the user's words are known)."""
    store = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    key = f"voice:session:{session_id}:context"
    for _ in range(300):
        if store.llen(key):
            break
        await asyncio.sleep(0.1)
    context = [json.loads(x) for x in store.lrange(key, 0, -1)]
    assert context, "no exchange was kept"
    return context


def of(events: list[Any], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]


async def test_server_vad_turns_a_recording_into_a_spoken_reply(stack: Stack) -> None:
    async with connect(url(stack), "voxtral-mini") as conn:
        created = await conn.recv()
        assert created.type == "session.created" and created.session.model == "voxtral-mini"
        await conn.session.update(session={"type": "realtime", "instructions": "Be brief.",
                                           "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                                   "silence_duration_ms": 500}}}})
        updated = await conn.recv()
        assert updated.type == "session.updated"
        assert updated.session.audio.input.turn_detection.silence_duration_ms == 500
        await append(conn, speech(), 48)
        events = await events_until(conn, "response.done")
        events += await events_until(conn, "conversation.item.input_audio_transcription.completed")
        kinds = [e.type for e in events]
        for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                     "input_audio_buffer.committed", "response.created", "response.output_audio.delta",
                     "response.output_audio_transcript.delta", "response.done"):
            assert kind in kinds, (kind, kinds)
        assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("response.output_audio.delta")
        done = of(events, "response.done")[0]
        assert done.response.status == "completed"
        audio = b"".join(base64.b64decode(e.delta) for e in of(events, "response.output_audio.delta"))
        pcm = np.frombuffer(audio, "<i2")
        assert len(pcm) > 24000 * 0.3 and np.abs(pcm).max() > 1000  # real speech at 24 kHz
        said = "".join(e.delta for e in of(events, "response.output_audio_transcript.delta"))
        assert said.strip() and done.response.output[0].content[0].transcript == \
            of(events, "response.output_audio_transcript.done")[0].transcript == said  # the deltas, joined
        heard = of(events, "conversation.item.input_audio_transcription.completed")
        assert heard and heard[0].item_id == of(events, "input_audio_buffer.committed")[0].item_id


async def test_a_beta_client_gets_the_beta_dialect(stack: Stack) -> None:
    """The SDK's beta client (OpenAI-Beta: realtime=v1), unchanged: the beta's session shape and event
    names, a spoken turn with its audio and transcript."""
    client = AsyncOpenAI(api_key="unused", websocket_base_url=url(stack))
    beta: Any = client.beta.realtime.connect(model="voxtral")  # typed loosely: its model names are OpenAI's
    async with beta as conn:
        created = await conn.recv()
        assert created.type == "session.created" and created.session.input_audio_format == "pcm16"
        await conn.session.update(session={"instructions": "Be brief.", "modalities": ["audio", "text"],
                                           "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}})
        updated = await conn.recv()
        assert updated.type == "session.updated" and updated.session.turn_detection.silence_duration_ms == 500
        await append(conn, speech(), 48)
        events = await events_until(conn, "response.done")
    kinds = [e.type for e in events]
    assert "response.audio.delta" in kinds and "response.audio_transcript.delta" in kinds, kinds
    assert not [k for k in kinds if k.startswith("response.output_audio")]
    said = "".join(e.delta for e in of(events, "response.audio_transcript.delta"))
    done = of(events, "response.done")[0].response
    assert done.status == "completed" and done.output[0].content[0].transcript == said
    assert len(b"".join(base64.b64decode(e.delta) for e in of(events, "response.audio.delta"))) > 24000


async def test_manual_commits_and_telephony_audio(stack: Stack) -> None:
    async with connect(url(stack)) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(session={"audio": {
            "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
            "output": {"format": {"type": "audio/pcmu"}}}})
        updated = await conn.recv()
        assert updated.type == "session.updated" and updated.session.audio.input.turn_detection is None
        await append(conn, ulaw_encode(speech(8000)), 8)
        await conn.response.create()  # nothing committed yet
        refused = await conn.recv()
        assert refused.type == "error" and refused.error.code == "input_audio_buffer_commit_empty"
        await conn.input_audio_buffer.commit()
        committed = await conn.recv()
        assert committed.type == "input_audio_buffer.committed"
        await conn.response.create()
        events = await events_until(conn, "response.done")
        assert not of(events, "input_audio_buffer.speech_started")  # manual: no VAD
        assert of(events, "response.done")[0].response.status == "completed"
        audio = b"".join(base64.b64decode(e.delta) for e in of(events, "response.output_audio.delta"))
        assert len(audio) > 8000 * 0.3  # one byte a sample at 8 kHz


async def test_cancel_and_truncate_keep_only_what_was_heard(stack: Stack) -> None:
    async with connect(url(stack)) as conn:
        created = await conn.recv()
        session_id = created.session.id
        await append(conn, speech(), 48)
        async for event in conn:
            if event.type == "response.output_audio.delta":
                item_id = event.item_id
                break
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=0)
        await conn.response.cancel()
        events = await events_until(conn, "response.done")
        assert of(events, "conversation.item.truncated")[0].audio_end_ms == 0
        done = of(events, "response.done")[0]
        assert done.response.status == "cancelled" and done.response.status_details.reason == "client_cancelled"
        await conn.response.cancel()  # nothing left to cancel
        assert (await conn.recv()).error.code == "response_cancel_not_active"
        context = await kept_context(stack, session_id)
    assert context and context[-1]["assistant"] == "" and context[-1]["cut_off"]  # nothing was heard


async def test_bad_events_get_an_error_and_the_session_goes_on(stack: Stack) -> None:
    async with connect(url(stack)) as conn:
        assert (await conn.recv()).type == "session.created"
        for body, param in (
            ({"type": "no.such.event", "event_id": "e1"}, "type"),
            ({"type": "session.update", "session": {"tools": [{"type": "function", "name": "no spaces"}]}},
             "session.tools"),
            ({"type": "session.update", "session": {"tool_choice": "required"}}, "session.tool_choice"),
            ({"type": "session.update", "session": {"output_modalities": ["text"]}}, "session.output_modalities"),
            ({"type": "input_audio_buffer.append", "audio": "%%%"}, "audio"),
            ({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}}, "item.content[0].type"),
            ({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "hi"}, {"type": "input_audio", "audio": ""}]}}, "item.content"),
        ):
            await conn.send(body)
            answer = await conn.recv()
            assert answer.type == "error" and answer.error.param == param, (body, answer)
        assert answer.error.event_id is None
        await conn.send({"type": "no.such.event", "event_id": "e2"})
        assert (await conn.recv()).error.event_id == "e2"
        await conn.session.update(session={"instructions": "Still here."})  # beta-free, plain GA
        assert (await conn.recv()).type == "session.updated"
        await conn.send({"type": "session.update", "session": {"voice": "alloy", "input_audio_format": "pcm16",
                                                               "turn_detection": {"type": "server_vad"}}})
        beta = await conn.recv()  # the beta's flat shape is read too
        assert beta.type == "session.updated", beta
        await conn.session.update(session={"audio": {"input": {"turn_detection": {"type": "semantic_vad",
                                                                                   "eagerness": "high"}}}})
        semantic = await conn.recv()  # the engine session starts again with a 2 s fallback, resumed
        assert semantic.type == "session.updated" and semantic.session.id == beta.session.id
        assert semantic.session.audio.input.turn_detection.eagerness == "high"


async def test_a_typed_message_gets_a_spoken_reply_and_joins_the_context(stack: Stack) -> None:
    async with connect(url(stack)) as conn:
        session_id = (await conn.recv()).session.id
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Hello! What is a good book to read on a train?"}]})
        added = await conn.recv()
        assert added.type == "conversation.item.added" and added.item.content[0].type == "input_text"
        assert (await conn.recv()).type == "conversation.item.done"
        await conn.response.create()
        events = await events_until(conn, "response.done")
        done = of(events, "response.done")[0].response
        assert done.status == "completed" and done.output[0].content[0].transcript.strip()
        assert of(events, "conversation.item.added")[0].previous_item_id == added.item.id
        audio = b"".join(base64.b64decode(e.delta) for e in of(events, "response.output_audio.delta"))
        assert np.abs(np.frombuffer(audio, "<i2")).max() > 1000  # spoken
        await conn.response.create()  # the typed message has its answer: nothing waits now
        assert (await conn.recv()).error.code == "input_audio_buffer_commit_empty"
        kept = (await kept_context(stack, session_id))[0]
    assert kept["user"] == "Hello! What is a good book to read on a train?" and kept["assistant"].strip()
    assert not of(events, "conversation.item.input_audio_transcription.completed")  # typed: nothing to transcribe


async def test_a_wrong_key_is_refused_at_the_handshake(redis_server: RedisProcess) -> None:
    server, settings = await start(redis_server, api_key=KEY)
    base = f"ws://127.0.0.1:{settings.web_port}/v1"
    try:
        with pytest.raises(Exception, match="401"):
            async with connect(base, key="wrong") as conn:
                await conn.recv()
        async with connect(base, key=KEY) as conn:
            assert (await conn.recv()).type == "session.created"
    finally:
        await server.stop(0)


async def test_the_readme_example_gets_a_spoken_reply(stack: Stack, tmp_path) -> None:
    import soundfile as sf

    question, reply = tmp_path / "question.wav", tmp_path / "reply.wav"
    samples, rate = recording("beckett.wav")
    sf.write(question, samples[: int(rate * 3.4)], rate)
    example = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "realtime_client.py"), str(question), str(reply), "--url", url(stack),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT)
    out, _ = await asyncio.wait_for(example.communicate(), 120)
    assert example.returncode == 0, out.decode()
    assert "completed" in out.decode()
    spoken, spoken_rate = sf.read(reply, dtype="int16")
    assert spoken_rate == 24000 and len(spoken) > 24000 * 0.3 and np.abs(spoken).max() > 1000


async def test_talking_over_a_reply_with_truncate_keeps_only_the_heard_part(stack: Stack) -> None:
    samples, source = recording("two_cities.wav")
    over = resample(samples[: int(source * 3.0)], source, 24000).astype("<i2").tobytes()
    async with connect(url(stack)) as conn:
        session_id = (await conn.recv()).session.id
        await append(conn, speech(), 48)
        said: list[str] = []
        async for event in conn:
            if event.type == "input_audio_buffer.committed":
                question = event.item_id
            if event.type == "response.output_audio_transcript.delta":
                said.append(event.delta)
            if event.type == "response.output_audio.delta":
                item_id = event.item_id
                break
        talking = asyncio.ensure_future(paced(conn, over + bytes(48 * 2500)))  # the user talks over it
        events = []
        async for event in conn:
            events.append(event)
            if event.type == "input_audio_buffer.speech_started":  # as the SDK's agents do: stop, truncate
                await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=300)
            if event.type == "response.done" and event.response.output[0].id == item_id:
                break
        await talking
        first = of(events, "response.done")[-1].response
        assert first.status == "cancelled" and first.status_details.reason == "turn_detected"
        async for event in conn:  # the interrupted turn's words are transcribed all the same
            if event.type == "conversation.item.input_audio_transcription.completed" and event.item_id == question:
                assert event.transcript.strip()
                break
        whole = "".join(said).strip()
        for _ in range(100):  # a truncate after the response ended revises what was kept: soon, not at once
            kept = (await kept_context(stack, session_id))[0]
            if len(kept["assistant"]) < len(whole):
                break
            await asyncio.sleep(0.05)
    assert kept["cut_off"] and len(kept["assistant"]) < len(whole)  # only what 300 ms of audio held
    assert whole.startswith(kept["assistant"].strip())


async def paced(conn: Any, audio: bytes) -> None:
    """Audio appended at real time (24 kHz PCM16), as a microphone sends it."""
    step = CHUNK_MS * 48
    for i in range(0, len(audio), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio[i:i + step]).decode())
        await asyncio.sleep(CHUNK_MS / 1000)


def note(event: Any) -> dict[str, Any]:
    """A server event as the client logs read it (tests/support/realtime_log.py)."""
    logged: dict[str, Any] = {"type": event.type, "t": time.monotonic()}
    response = getattr(event, "response", None)
    if response is not None:
        logged.update(response=response.id, status=response.status)
    elif getattr(event, "response_id", None):
        logged["response"] = event.response_id
    if event.type == "error":
        logged["error"] = event.error.message
    return logged


async def log_until(conn: Any, log: list[dict[str, Any]], last: str, count: int = 1) -> None:
    async for event in conn:
        log.append(note(event))
        assert event.type != "error", log
        if event.type == last:
            count -= 1
            if not count:
                return


@pytest.mark.parametrize("dialect", ["ga", "beta"])
async def test_the_sdk_talks_types_and_is_talked_over_in_either_dialect(stack: Stack, dialect: str) -> None:
    """The SDK's GA client and its beta client, unchanged: a spoken turn, a typed turn, and a typed
    question talked over while its answer plays (ended at the speech, then the speech answered)."""
    client = AsyncOpenAI(api_key="unused", websocket_base_url=url(stack))
    beta = dialect == "beta"
    manager: Any = client.beta.realtime.connect(model="voxtral") if beta else client.realtime.connect(model="voxtral")
    turn_detection = {"type": "server_vad", "silence_duration_ms": 500}
    session = {"instructions": "Be brief.", "turn_detection": turn_detection} if beta else \
        {"type": "realtime", "instructions": "Be brief.", "audio": {"input": {"turn_detection": turn_detection}}}
    asked = {"modalities": ["audio", "text"]} if beta else {"output_modalities": ["audio"]}
    log: list[dict[str, Any]] = []
    async with manager as conn:
        await log_until(conn, log, "session.created")
        await conn.session.update(session=session)
        await log_until(conn, log, "session.updated")
        assert log[-1]["type"] == "session.updated", log
        await append(conn, speech(), 48)  # spoken
        await log_until(conn, log, "response.done")
        for text in ("What is a good book for a train ride?", "Tell me a long story about a night train."):
            await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                      "content": [{"type": "input_text", "text": text}]})
            await conn.response.create(response=asked)
            if text.startswith("Tell"):
                await log_until(conn, log, "response.audio.delta" if beta else "response.output_audio.delta")
                talking = asyncio.ensure_future(paced(conn, speech()))  # talked over while it plays
                await log_until(conn, log, "response.done", count=2)
                await talking
            else:
                await log_until(conn, log, "response.done")
    kinds = {e["type"] for e in log}
    assert "error" not in kinds, log
    other = ("response.output_audio", "response.output_text") if beta else ("response.audio", "response.text")
    assert not {k for k in kinds if k.startswith(other)}, kinds  # one dialect's names only
    assert check_responses(log) == ["completed", "completed", "cancelled", "completed"], log
    assert len(barge_ins(log)) == 1, log  # cancelled at speech_started, no audio of it after
