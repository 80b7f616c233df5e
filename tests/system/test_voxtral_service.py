"""VoxtralService over real gRPC, on a small random-weight Voxtral loaded through the production path."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio

from harness.recordings import recording
from services.common.channels import open_channel
from services.voxtral.config import VoxtralSettings
from services.voxtral.server import voxtral_service
from tests.support.serving import serve
from voice.v1 import voxtral_pb2, voxtral_pb2_grpc

VOXTRAL = voxtral_pb2.DESCRIPTOR.services_by_name["VoxtralService"]
# A real recording (make assets).
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def start(model: Path, **overrides):
    settings = VoxtralSettings(port=0, grace_s=0, model_id=str(model), **{"compile_mode": "eager", **overrides})
    server, target = await serve(settings, voxtral_service(settings))
    channel = open_channel(target, VOXTRAL)
    return server, voxtral_pb2_grpc.VoxtralServiceStub(channel), channel


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def voxtral(tiny_voxtral: Path):
    server, stub, channel = await start(tiny_voxtral, seed=0, slots=1, max_queue=1)
    yield stub, server
    await channel.close()
    await server.stop(0)


def utterance(seconds: float = 3.0) -> bytes:
    samples, _ = recording("beckett.wav")
    return samples[: int(seconds * 16000)].tobytes()


def respond(audio: bytes | None = None, **fields) -> voxtral_pb2.RespondRequest:
    return voxtral_pb2.RespondRequest(audio=utterance() if audio is None else audio, sample_rate_hz=16000, **fields)


CLOCK = voxtral_pb2.Tool(name="get_time", description="The time now in a city",
                         parameters_json='{"type": "object", "properties": {"city": {"type": "string"}}}')


def called(call_id: str = "abc123XYZ") -> voxtral_pb2.ConversationTurn:
    return voxtral_pb2.ConversationTurn(role=voxtral_pb2.ROLE_ASSISTANT, tool_calls=[voxtral_pb2.ToolCall(
        id=call_id, name="get_time", arguments_json='{"city": "Paris"}')])


async def collect(stub, request, timeout: float = 60):
    return [r async for r in stub.Respond(request, timeout=timeout)]


async def test_reply_streams_deltas_then_stats(voxtral) -> None:
    stub, _ = voxtral
    replies = await collect(stub, respond())
    deltas, last = replies[:-1], replies[-1]
    assert len(deltas) >= 2 and all(r.text_delta and not r.HasField("stats") for r in deltas)
    assert deltas[0].HasField("ttft_ms") and not deltas[1].HasField("ttft_ms")
    text = "".join(r.text_delta for r in deltas)
    assert sum(c.isprintable() and not c.isspace() for c in text) >= 3  # the seeded model says something
    stats = last.stats
    assert stats.audio_tokens == 375 and stats.prompt_tokens > 375
    assert stats.completion_tokens == 25 and stats.finish_reason == voxtral_pb2.FINISH_REASON_LENGTH  # seed: 25
    assert stats.prefill_ms > 0 and stats.decode_ms > 0 and stats.ttft_ms == deltas[0].ttft_ms


async def test_deltas_arrive_while_generation_is_still_running(voxtral) -> None:
    stub, server = voxtral
    pool = server.services[0].servicer.responder.get().pool
    call = stub.Respond(respond(generation=voxtral_pb2.GenerationOptions(max_new_tokens=400, min_new_tokens=400)),
                        timeout=120)
    first = await call.read()
    assert first.text_delta
    assert pool.busy == 1  # the first text is here and the model is still generating
    call.cancel()
    await asyncio.sleep(0.5)
    assert pool.busy == 0


async def test_a_typed_turn_is_answered_without_audio(voxtral) -> None:
    stub, _ = voxtral
    request = voxtral_pb2.RespondRequest(text="Where is the station?", history=[
        voxtral_pb2.ConversationTurn(role=voxtral_pb2.ROLE_USER, text="Hello."),
        voxtral_pb2.ConversationTurn(role=voxtral_pb2.ROLE_ASSISTANT, text="Hi, how can I help?")])
    replies = await collect(stub, request)
    stats = replies[-1].stats
    assert "".join(r.text_delta for r in replies).strip()
    assert stats.audio_tokens == 0 and 10 < stats.prompt_tokens < 200 and stats.completion_tokens > 0


async def test_history_reaches_the_prompt(voxtral) -> None:
    stub, _ = voxtral
    bare = (await collect(stub, respond()))[-1].stats.prompt_tokens
    history = [voxtral_pb2.ConversationTurn(role=voxtral_pb2.ROLE_USER, text="Where is the station?"),
               voxtral_pb2.ConversationTurn(role=voxtral_pb2.ROLE_ASSISTANT, text="Two streets north.")]
    with_history = (await collect(stub, respond(history=history)))[-1].stats.prompt_tokens
    assert with_history > bare + 8


async def test_generation_settings_reach_generate(voxtral) -> None:
    stub, _ = voxtral
    five = (await collect(stub, respond(generation=voxtral_pb2.GenerationOptions(
        max_new_tokens=5, min_new_tokens=5))))[-1].stats
    assert five.completion_tokens == 5
    # Greedy decoding is repeatable; a repetition penalty changes what the random model repeats.
    greedy = voxtral_pb2.GenerationOptions(temperature=0.0, repetition_penalty=1.0, max_new_tokens=80,
                                           min_new_tokens=80)
    penalised = voxtral_pb2.GenerationOptions(temperature=0.0, repetition_penalty=2.0, max_new_tokens=80,
                                              min_new_tokens=80)
    a = "".join(r.text_delta for r in await collect(stub, respond(generation=greedy)))
    b = "".join(r.text_delta for r in await collect(stub, respond(generation=greedy)))
    c = "".join(r.text_delta for r in await collect(stub, respond(generation=penalised)))
    assert a == b
    assert a != c


async def test_cancel_mid_stream_frees_the_slot_for_the_queued_request(voxtral, caplog) -> None:
    stub, _ = voxtral
    caplog.set_level(logging.INFO, logger="services.voxtral.engine")
    long = stub.Respond(respond(generation=voxtral_pb2.GenerationOptions(max_new_tokens=500, min_new_tokens=500)),
                        timeout=120)
    assert (await long.read()).text_delta
    queued = asyncio.ensure_future(collect(stub, respond(generation=voxtral_pb2.GenerationOptions(max_new_tokens=3))))
    await asyncio.sleep(0.2)
    long.cancel()
    replies = await asyncio.wait_for(queued, 60)
    assert replies[-1].stats.completion_tokens >= 1
    stopped = [r for r in caplog.records if r.getMessage() == "generation finished"
               and getattr(r, "finish_reason", "") == "cancelled"]
    assert stopped and stopped[0].completion_tokens < 500


async def test_queue_overflow_is_resource_exhausted(voxtral) -> None:
    stub, _ = voxtral
    busy = voxtral_pb2.GenerationOptions(max_new_tokens=300, min_new_tokens=300)
    first = stub.Respond(respond(generation=busy), timeout=120)
    assert (await first.read()).text_delta
    second = stub.Respond(respond(generation=busy), timeout=120)
    await asyncio.sleep(0.2)  # second waits in the one queue place
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(stub, respond())
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1 running and 1 queued" in err.value.details()
    first.cancel()
    second.cancel()
    await asyncio.sleep(0.5)


async def test_deadline_stops_generation(voxtral) -> None:
    stub, _ = voxtral
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(stub, respond(generation=voxtral_pb2.GenerationOptions(max_new_tokens=500, min_new_tokens=500)),
                      timeout=1.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(await collect(stub, respond())) > 1  # the slot is free again


# Each request is made when its test runs: the recording is read then, never at collection.
@pytest.mark.parametrize(("request_", "detail"), [
    (lambda: respond(audio=b""), "audio is empty"),
    (lambda: voxtral_pb2.RespondRequest(audio=b"\x00\x00" * 1600, sample_rate_hz=8000), "sample_rate_hz=8000"),
    (lambda: respond(audio=b"\x00" * 3201), "even byte count"),
    (lambda: respond(audio=np.zeros(16000 * 31, dtype=np.int16).tobytes()), "the limit is 30 s"),
    (lambda: respond(generation=voxtral_pb2.GenerationOptions(temperature=3.0)), "temperature=3"),
    (lambda: respond(generation=voxtral_pb2.GenerationOptions(max_new_tokens=10000)), "max_new_tokens=10000"),
    (lambda: respond(text="And the weather?"), "not both"),
    (lambda: voxtral_pb2.RespondRequest(text="x" * 4001, sample_rate_hz=16000), "use 1 to 4000"),
    (lambda: respond(tools=[voxtral_pb2.Tool(name="get time")]), "tools[0].name"),
    (lambda: respond(tools=[CLOCK, voxtral_pb2.Tool(name="f", parameters_json="{")]),
     "tools[1].parameters is not JSON"),
    (lambda: respond(after=[voxtral_pb2.ConversationTurn(role=voxtral_pb2.ROLE_TOOL, text="10:42",
                                                         tool_call_id="abc123XYZ")]), "no tools are declared"),
    (lambda: respond(tools=[CLOCK], after=[called("call_1")]), "must be nine letters or digits"),
    (lambda: respond(tools=[CLOCK], after=[voxtral_pb2.ConversationTurn(role=voxtral_pb2.ROLE_TOOL, text="10:42")]),
     "names its call in tool_call_id"),
])
async def test_bad_requests_are_invalid_argument(voxtral, request_, detail: str) -> None:
    stub, _ = voxtral
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(stub, request_())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in err.value.details()


async def test_transcribe(voxtral) -> None:
    stub, _ = voxtral
    reply = await stub.Transcribe(voxtral_pb2.TranscribeRequest(audio=utterance(), sample_rate_hz=16000), timeout=60)
    assert reply.language == "en" and reply.text and reply.compute_ms > 0
    for language in ("English", "zz", "x" * 100_000):  # not a code, a well-formed unknown code, a huge one
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Transcribe(voxtral_pb2.TranscribeRequest(audio=utterance(), sample_rate_hz=16000,
                                                                language=language), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not an ISO 639-1 code; accepted: aa, ab," in err.value.details() and ", en, " in err.value.details()


async def test_a_queued_reply_goes_before_a_queued_transcription(tiny_voxtral: Path) -> None:
    server, stub, channel = await start(tiny_voxtral, seed=0, slots=1, max_queue=2)
    pool = server.services[0].servicer.responder.get().pool
    finished: list[str] = []
    try:
        busy = stub.Respond(respond(generation=voxtral_pb2.GenerationOptions(max_new_tokens=400, min_new_tokens=400)),
                            timeout=120)
        assert (await busy.read()).text_delta  # holds the only slot
        transcription = asyncio.ensure_future(stub.Transcribe(
            voxtral_pb2.TranscribeRequest(audio=utterance(), sample_rate_hz=16000), timeout=60))
        transcription.add_done_callback(lambda _: finished.append("transcribe"))
        while pool.waiting < 1:
            await asyncio.sleep(0.01)
        short = respond(generation=voxtral_pb2.GenerationOptions(max_new_tokens=3))
        reply = asyncio.ensure_future(collect(stub, short))
        reply.add_done_callback(lambda _: finished.append("respond"))
        while pool.waiting < 2:
            await asyncio.sleep(0.01)
        busy.cancel()
        await asyncio.wait_for(asyncio.gather(transcription, reply), 60)
        assert finished == ["respond", "transcribe"]  # it came second but ran first
        assert reply.result()[-1].stats.completion_tokens >= 1 and transcription.result().text
    finally:
        await channel.close()
        await server.stop(0)


async def test_get_info_reports_what_is_in_effect(voxtral) -> None:
    stub, _ = voxtral
    info = await stub.GetInfo(voxtral_pb2.GetInfoRequest(), timeout=5)
    assert (info.dtype, info.device, info.compile_mode, info.kv_cache, info.attention) == \
        ("float32", "cpu", "eager", "static", "sdpa")
    assert info.generation_defaults.max_new_tokens == 25 and info.generation_slots == 1


async def test_compiled_decoding_on_cpu_is_reported(tiny_voxtral: Path) -> None:
    server, stub, channel = await start(tiny_voxtral, compile_mode="reduce-overhead")
    try:
        info = await stub.GetInfo(voxtral_pb2.GetInfoRequest(), timeout=5)
        assert info.compile_mode == "reduce-overhead"
        assert len(await collect(stub, respond())) > 1
    finally:
        await channel.close()
        await server.stop(0)


async def test_compile_failure_falls_back_to_eager(tiny_voxtral: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def broken_compile(*args, **kwargs):
        raise RuntimeError(f"no compiler here (mode {kwargs.get('mode')})")

    monkeypatch.setattr(torch, "compile", broken_compile)
    server, stub, channel = await start(tiny_voxtral, compile_mode="reduce-overhead")
    try:
        assert (await stub.GetInfo(voxtral_pb2.GetInfoRequest(), timeout=5)).compile_mode == "eager"
    finally:
        await channel.close()
        await server.stop(0)


async def test_a_reply_with_tools_declared_goes_on_after_a_call_and_its_result(voxtral) -> None:
    stub, _ = voxtral
    plain = await collect(stub, respond(text="What time is it in Paris?", audio=b""))
    after = [called(), voxtral_pb2.ConversationTurn(role=voxtral_pb2.ROLE_TOOL, text="10:42", tool_call_id="abc123XYZ")]
    replies = await collect(stub, respond(text="What time is it in Paris?", audio=b"", tools=[CLOCK], after=after))
    last = replies[-1]
    assert last.stats.prompt_tokens > plain[-1].stats.prompt_tokens + 20  # the tools, the call and its result
    if last.stats.finish_reason == voxtral_pb2.FINISH_REASON_TOOL_CALLS:  # random weights may write a call
        assert bool(last.tool_calls) != bool(last.tool_call_error)
    else:  # a spoken reply keeps its own budget (the room for a call's JSON is for calls)
        assert not last.tool_calls and not last.tool_call_error and len(replies) > 1
        assert last.stats.finish_reason != voxtral_pb2.FINISH_REASON_LENGTH or last.stats.completion_tokens == 25
