"""Capacity on real processes: the real Kokoro TTS serves the earliest need first across callers,
a cancelled synthesis stops and frees the slot for the next request, digits and foreign scripts
cannot hold the slot; a gateway at capacity refuses a new session (gRPC status with retry-after,
HTTP 503 with Retry-After on the WebSocket) while its admitted session goes on."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from harness.asr import transcribe, word_errors
from harness.local_redis import RedisProcess, free_port
from services.gateway.config import AdmissionSettings, GatewaySettings
from services.gateway.engine.vocabulary import Stage
from services.gateway.wiring import gateway_service
from tests.support.serving import serve
from tests.support.tts_server import pcm, speak, start
from voice.v1 import gateway_pb2, gateway_pb2_grpc, tts_pb2, tts_pb2_grpc

LONG = ("The committee met on Tuesday afternoon to discuss the budget for the coming year, and after a long "
        "and careful debate about roads, schools, parks and libraries, it agreed to spend a little more on each "
        "of them than it had the year before, while keeping the taxes exactly where they were.")


def stopped() -> float:
    return REGISTRY.get_sample_value("voice_tts_synthesis_stopped_total") or 0.0


async def test_a_cancelled_synthesis_stops_and_the_next_request_gets_the_slot() -> None:
    server, stub, channel = await start(timeout_s=60, max_clause_phonemes=510)
    pool = server.services[0].servicer.synthesizer.get().pool
    try:
        before = stopped()
        call = stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG), timeout=60)
        reader = asyncio.ensure_future(call.read())
        while pool.busy == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # well inside the one long piece
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        after = await speak(stub, "Thank you very much for your help.")
        assert stopped() == before + 1  # the running piece was stopped, not run to its end
        heard = await asyncio.to_thread(transcribe, pcm(after), 24000)
        errors, words = word_errors("Thank you very much for your help.", heard)
        assert errors / words <= 0.2
        assert pool.busy == 0 and pool.waiting == 0
    finally:
        await channel.close()
        await server.stop(0)


async def test_the_earliest_need_is_served_first_across_sessions() -> None:
    server, stub, channel = await start(timeout_s=60)
    pool = server.services[0].servicer.synthesizer.get().pool
    try:
        order: list[str] = []

        async def clause(name: str, text: str, need_in_ms: int) -> None:
            request = tts_pb2.SynthesizeRequest(text=text, need_in_ms=need_in_ms, session_id=name)
            async for _ in stub.Synthesize(request, timeout=60):
                order.append(name)
                return

        holder = asyncio.ensure_future(clause("holder", "The weather is sunny and warm today.", 0))
        while pool.busy == 0:
            await asyncio.sleep(0.005)
        later_clause = asyncio.ensure_future(clause("a: third clause", "Please open the window.", 9000))
        while pool.waiting < 1:
            await asyncio.sleep(0.005)
        first_clause = asyncio.ensure_future(clause("b: first clause", "Dinner is ready.", 0))
        while pool.waiting < 2 and not holder.done():
            await asyncio.sleep(0.005)
        await asyncio.gather(holder, later_clause, first_clause)
        assert order == ["holder", "b: first clause", "a: third clause"]
    finally:
        await channel.close()
        await server.stop(0)


async def test_digits_and_foreign_scripts_are_spoken_in_bounded_pieces() -> None:
    server, stub, channel = await start(timeout_s=3.0)  # the seed's budget: no piece may need more
    try:
        digits = await speak(stub, "Your code is " + "4815162342" * 3 + ".")
        assert len(digits) > 1 and all(c.compute_ms > 0 for c in digits)  # cut into pieces, none refused
        heard = await asyncio.to_thread(transcribe, pcm(digits), 24000)
        assert sum(ch.isdigit() for ch in heard) + sum(heard.lower().count(w) for w in ("four", "eight")) >= 10
        with pytest.raises(grpc.aio.AioRpcError) as err:  # nothing speakable: said, never a silent OK
            await speak(stub, "مرحبا بكم في المدينة، " * 15)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ARABIC" in err.value.details()
        mixed = await speak(stub, "Hello مرحبا my friend.")
        assert " ".join(c.text for c in mixed) == "Hello my friend."
    finally:
        await channel.close()
        await server.stop(0)


async def test_a_gateway_at_capacity_refuses_new_sessions_while_the_admitted_one_goes_on(
        redis_server: RedisProcess) -> None:
    tts, _, tts_channel = await start(timeout_s=30)
    await tts_channel.close()
    # Voxtral's target is a server without the Voxtral service: its load probe answers UNIMPLEMENTED,
    # which leaves it out of the decision (a stage that does not answer at all refuses every session).
    # Lateness counts while the stage is loaded: at a utilisation limit of 0.1, one clause is a load.
    settings = GatewaySettings(port=0, grace_s=0, metrics_port=0, web_port=free_port(), auth_disabled=True,
                               redis={"url": redis_server.url}, vad_target="127.0.0.1:9",
                               voxtral_target=f"127.0.0.1:{tts.port}", tts_target=f"127.0.0.1:{tts.port}",
                               admission=AdmissionSettings(poll_s=0.05, max_late_ms=0.0, max_utilisation=0.1))
    gateway, target = await serve(settings, gateway_service(settings))
    engine = gateway.services[0].servicer.engine
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            while "tts" not in {s.value for s in engine.admission.loads}:
                await asyncio.sleep(0.02)
            config = gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=16000))
            admitted_inputs: asyncio.Queue[gateway_pb2.ConverseRequest | None] = asyncio.Queue()
            admitted_inputs.put_nowait(config)

            async def inputs():
                while (item := await admitted_inputs.get()) is not None:
                    yield item

            admitted = stub.Converse(inputs(), timeout=60)
            assert (await admitted.read()).HasField("session_started")
            # Work on the TTS that waited at all past its need time: at a limit of 0 ms, that is full.
            async with grpc.aio.insecure_channel(f"127.0.0.1:{tts.port}") as tts_channel:
                async for _ in tts_pb2_grpc.TtsServiceStub(tts_channel).Synthesize(
                        tts_pb2.SynthesizeRequest(text="Hello there."), timeout=30):
                    pass
            while engine.admission.loads[Stage.TTS].late_p95_ms <= 0:
                await asyncio.sleep(0.02)

            async def once():
                yield config

            refused = stub.Converse(once(), timeout=10)
            notice = await refused.read()  # said in band, then as the status
            assert notice.error.code == gateway_pb2.ERROR_CODE_RESOURCE_EXHAUSTED
            assert await refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "at capacity: tts starts work" in await refused.details()
            assert dict(await refused.trailing_metadata() or ())["retry-after"] == "5"
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.WSServerHandshakeError) as ws_err:
                    await http.ws_connect(f"http://127.0.0.1:{settings.web_port}/ws")
                assert ws_err.value.status == 503
                assert ws_err.value.headers is not None and ws_err.value.headers["Retry-After"] == "5"
                health = await (await http.get(f"http://127.0.0.1:{settings.web_port}/healthz")).json()
                assert health["sessions"] == 1 and health["stages"]["tts"]["slots"] == 1
            # The admitted session goes on: it still takes input and answers.
            admitted_inputs.put_nowait(gateway_pb2.ConverseRequest(audio=np.zeros(1600, "<i2").tobytes()))
            admitted_inputs.put_nowait(gateway_pb2.ConverseRequest(control=gateway_pb2.CONTROL_ACTION_RESET_CONTEXT))
            admitted_inputs.put_nowait(None)
            rest = []
            while (message := await admitted.read()) is not grpc.aio.EOF:
                rest.append(message)
            assert not [m for m in rest if m.HasField("error") and not m.error.session_continues]
            assert await admitted.code() == grpc.StatusCode.OK
    finally:
        await gateway.stop(0)
        await tts.stop(0)
