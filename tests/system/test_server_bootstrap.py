"""The gRPC bootstrap, run as a real process: health, warm-up, drain on SIGTERM, limits, errors."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.processes import ServiceProcess
from services.common.channels import open_channel
from voice.v1 import tts_pb2, tts_pb2_grpc

TTS = tts_pb2.DESCRIPTOR.services_by_name["TtsService"]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health(target: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return reply.status


async def wait_status(target: str, status: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (got := await health(target)) != status:
        assert time.monotonic() < deadline, f"health stayed {got}"
        await asyncio.sleep(0.05)


@pytest.fixture
def probe(request: pytest.FixtureRequest):
    env = {"PROBE_WARMUP_S": "1.5", "PROBE_CALL_S": "1.0", "PROBE_GRACE_S": "5",
           "PROBE_MAX_MESSAGE_BYTES": str(256 * 1024)}
    env.update(getattr(request, "param", {}))
    proc = ServiceProcess("tests.support.probe_service", "PROBE_", env)
    proc.wait_listening()
    yield proc
    proc.stop()


async def test_health_not_serving_until_warmed_up(probe: ServiceProcess) -> None:
    assert await health(probe.target) == NOT_SERVING
    assert await health(probe.target, TTS.full_name) == NOT_SERVING
    await wait_status(probe.target, SERVING)
    assert await health(probe.target, TTS.full_name) == SERVING
    assert "warmed up" in probe.messages()


async def test_sigterm_drains_in_flight_call_and_refuses_new_ones(probe: ServiceProcess) -> None:
    await wait_status(probe.target, SERVING)
    async with grpc.aio.insecure_channel(probe.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == SERVING
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        slow = asyncio.ensure_future(stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=10))
        await asyncio.sleep(0.3)  # the call is in flight (it takes 1 s)
        probe.terminate()
        assert (await watch.read()).status == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        reply = await slow
        assert reply.backend == f"probe:{probe.port}"
    assert probe.proc.wait(10) == 0
    assert "draining" in probe.messages() and "stopped" in probe.messages()


async def test_oversized_message_is_resource_exhausted(probe: ServiceProcess) -> None:
    await wait_status(probe.target, SERVING)
    async with grpc.aio.insecure_channel(probe.target) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Synthesize(tts_pb2.SynthesizeRequest(text="x" * 300_000), timeout=5):
                pass
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The server is unharmed: the next call on the same channel works.
        replies = [r async for r in stub.Synthesize(tts_pb2.SynthesizeRequest(text="ok"), timeout=5)]
        assert [r.text for r in replies] == ["first", "ok"]


@pytest.mark.parametrize(
    ("text", "code", "detail"),
    [("invalid", grpc.StatusCode.INVALID_ARGUMENT, "refused by the probe"),
     ("crash", grpc.StatusCode.INTERNAL, "RuntimeError: probe crashed")],
)
async def test_exceptions_become_status_codes(probe: ServiceProcess, text: str, code, detail: str) -> None:
    await wait_status(probe.target, SERVING)
    async with grpc.aio.insecure_channel(probe.target) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for reply in stub.Synthesize(tts_pb2.SynthesizeRequest(text=text), timeout=5):
                received.append(reply.text)
        assert received == ["first"]
        assert err.value.code() == code
        assert detail in err.value.details()


@pytest.mark.parametrize("probe", [{"PROBE_FAIL_FIRST": "2", "PROBE_CALL_S": "0", "PROBE_WARMUP_S": "0"}],
                         indirect=True)
async def test_channel_retries_unary_calls_on_unavailable(probe: ServiceProcess) -> None:
    async with open_channel(probe.target, TTS) as channel:
        reply = await tts_pb2_grpc.TtsServiceStub(channel).ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
    assert reply.default_voice == "3"  # two refusals retried by the channel, the third call answered


async def test_round_robin_spreads_calls_over_every_address() -> None:
    env = {"PROBE_CALL_S": "0", "PROBE_WARMUP_S": "0"}
    procs = [ServiceProcess("tests.support.probe_service", "PROBE_", env) for _ in range(2)]
    try:
        for proc in procs:
            proc.wait_listening()
        target = "ipv4:" + ",".join(p.target for p in procs)
        async with open_channel(target, TTS) as channel:
            stub = tts_pb2_grpc.TtsServiceStub(channel)
            await channel.channel_ready()
            await asyncio.sleep(0.3)  # let every subchannel connect
            backends = {(await stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)).backend
                        for _ in range(10)}
        assert backends == {f"probe:{p.port}" for p in procs}
    finally:
        for proc in procs:
            proc.stop()


async def test_reflection_lists_the_services(probe: ServiceProcess) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(probe.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        replies = [r async for r in stub.ServerReflectionInfo(ask(), timeout=5)]
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"voice.v1.TtsService", "grpc.health.v1.Health"} <= names
