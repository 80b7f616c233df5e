"""Gateway pieces without the other services: the input timeline, the session config checks, channels."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from services.common.errors import InvalidArgument
from services.gateway.config import GatewaySettings
from services.gateway.engine.inputs import configure
from services.gateway.engine.timeline import InputTimeline
from services.gateway.grpc_stages import GrpcStages
from services.gateway.messages import session_request
from voice.v1 import gateway_pb2


def test_timeline_cuts_by_absolute_offsets_across_the_wrap() -> None:
    timeline = InputTimeline(1000, keep_s=1.0)  # holds 1000 samples
    samples = np.arange(2500, dtype=np.int16)
    for i in range(0, 2500, 300):
        timeline.append(samples[i:i + 300].tobytes(), arrived_at=float(i))
    assert timeline.total == 2500
    assert np.array_equal(timeline.cut(1700, 2400), samples[1700:2400])
    assert np.array_equal(timeline.cut(0, 2000), samples[1500:2000])  # older samples are gone
    assert timeline.arrival_of(2399) == 2100.0 and timeline.arrival_of(2400) == 2400.0
    assert timeline.arrival_of(9999) is None


def test_timeline_keeps_the_right_samples_of_a_chunk_longer_than_itself() -> None:
    timeline = InputTimeline(1000, keep_s=1.0)  # holds 1000 samples
    samples = np.arange(2800, dtype=np.int16)
    timeline.append(samples[:300].tobytes(), arrived_at=0.0)
    timeline.append(samples[300:].tobytes(), arrived_at=1.0)  # 2500 samples in one message
    assert np.array_equal(timeline.cut(1800, 2800), samples[1800:2800])
    timeline.append(samples[:100].tobytes(), arrived_at=2.0)
    assert np.array_equal(timeline.cut(2800, 2900), samples[:100])
    assert np.array_equal(timeline.cut(1900, 2800), samples[1900:2800])


def test_timeline_keeps_an_odd_byte_for_the_next_chunk() -> None:
    timeline = InputTimeline(16000, keep_s=1.0)
    data = np.array([1, -2, 3], dtype="<i2").tobytes()
    assert timeline.append(data[:3], 0.0) == data[:2]
    assert timeline.append(data[3:], 0.1) == data[2:]
    assert np.array_equal(timeline.cut(0, 3), [1, -2, 3])


def config(**fields):
    return session_request(gateway_pb2.SessionConfig(**{"input_sample_rate_hz": 16000, **fields}))


def test_session_config_defaults() -> None:
    parsed = configure(config(), GatewaySettings(auth_disabled=True), {"af_heart"})
    assert (parsed.output_rate_hz, parsed.end_silence_ms, parsed.speed, parsed.voice) == (24000, 800, None, "")


@pytest.mark.parametrize(("fields", "message"), [
    ({"input_sample_rate_hz": 0}, "input_sample_rate_hz is required"),
    ({"input_sample_rate_hz": 96000}, "input_sample_rate_hz=96000 is not supported"),
    ({"output_sample_rate_hz": 4000}, "output_sample_rate_hz=4000 is not supported"),
    ({"voice": "zz_nobody"}, "voice 'zz_nobody' is unknown: the TTS offers af_heart"),
    ({"speed": 3.0}, "speed=3 is out of range"),
    ({"end_silence_ms": 50}, "end_silence_ms=50 is out of range: use 100 to 10000"),
    ({"instructions": "x" * 2001}, "the limit is 2000"),
])
def test_bad_session_config(fields, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        configure(config(**fields), GatewaySettings(auth_disabled=True), {"af_heart"})


async def test_stages_connect_every_channel_before_any_call() -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    settings = GatewaySettings(auth_disabled=True, vad_target=target, voxtral_target=target, tts_target=target)
    stages = GrpcStages(settings)
    channels = (stages._vad_channel, stages._voxtral_channel, stages._tts_channel)
    try:
        assert {c.get_state() for c in channels} == {grpc.ChannelConnectivity.IDLE}  # gRPC connects lazily
        stages.connect()
        async with asyncio.timeout(10):
            for channel in channels:
                while (state := channel.get_state()) != grpc.ChannelConnectivity.READY:
                    await channel.wait_for_state_change(state)
    finally:
        await stages.close()
        await server.stop(None)
