"""VadService over real gRPC on an ephemeral port: events, chunking, bad input, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import numpy as np
import pytest

from harness.recordings import recording
from services.common.channels import open_channel
from services.vad.config import VadSettings
from services.vad.endpointer import Endpointer, SpeechEvent
from services.vad.server import SERVICE_NAME, endpointer_config, vad_service
from tests.support.serving import serve
from voice.v1 import audio_pb2, vad_pb2, vad_pb2_grpc

# Real recordings (make assets).

VAD = vad_pb2.DESCRIPTOR.services_by_name["VadService"]


SETTINGS = VadSettings(port=0, max_streams=4, grace_s=0)
SILENCE = vad_pb2.END_OF_TURN_DETECTOR_SILENCE


@pytest.fixture
async def vad() -> AsyncIterator[vad_pb2_grpc.VadServiceStub]:
    server, target = await serve(SETTINGS, vad_service(SETTINGS))
    channel = open_channel(target, VAD, max_message_bytes=16 * 1024 * 1024)
    yield vad_pb2_grpc.VadServiceStub(channel)
    await channel.close()
    await server.stop(0)


def config(rate: int, **fields: Any) -> vad_pb2.StreamDetectRequest:
    return vad_pb2.StreamDetectRequest(config=vad_pb2.VadConfig(
        format=audio_pb2.AudioFormat(sample_rate_hz=rate, encoding=audio_pb2.AUDIO_ENCODING_PCM16LE, channels=1),
        **fields))


def chunks(data: bytes, size: int) -> list[vad_pb2.StreamDetectRequest]:
    return [vad_pb2.StreamDetectRequest(audio=data[i : i + size]) for i in range(0, len(data), size)]


async def detect(stub: vad_pb2_grpc.VadServiceStub, requests: Iterable[vad_pb2.StreamDetectRequest]):
    return [r.event async for r in stub.StreamDetect(iter(requests), timeout=60)]


def as_tuples(events) -> list[tuple[int, int, int, int]]:
    return [(e.type, e.start_sample, e.end_sample, e.decided_at_sample) for e in events]


async def test_events_over_grpc_match_the_endpointer_for_any_chunking(vad) -> None:
    samples, rate = recording("beckett.wav")
    data = samples.tobytes()
    endpointer = Endpointer(endpointer_config(config(rate, detector=SILENCE).config, SETTINGS))
    expected = endpointer.push(data) + endpointer.finish()
    results = []
    for size in (7, rate // 50 * 2, rate * 2):
        results.append(as_tuples(await detect(vad, [config(rate, detector=SILENCE), *chunks(data, size)])))
    assert results[0] == results[1] == results[2]
    kinds = [vad_pb2.SpeechEventType.Name(vad_pb2.SpeechEventType.ValueType(t[0])) for t in results[0]]
    assert kinds[0] == "SPEECH_EVENT_TYPE_STARTED" and kinds.count("SPEECH_EVENT_TYPE_ENDED") >= 2
    assert [(t[1], t[2], t[3]) for t in results[0]] == [(e.start_sample, e.end_sample, e.decided_at_sample)
                                                         for e in expected if isinstance(e, SpeechEvent)]


async def test_events_stream_while_audio_is_still_being_sent(vad) -> None:
    samples, rate = recording("beckett.wav")
    data = samples.tobytes()
    sent = 0

    async def paced():
        nonlocal sent
        yield config(rate)
        for request in chunks(data, 3200):  # 100 ms a message, sent ten times faster than real time
            sent += len(request.audio)
            yield request
            await asyncio.sleep(0.01)

    arrivals = [(r.event.type, sent) async for r in vad.StreamDetect(paced(), timeout=60)]
    started_at = arrivals[0][1]
    assert arrivals[0][0] == vad_pb2.SPEECH_EVENT_TYPE_STARTED
    assert started_at < len(data) / 4, "the first event waited for the end of the audio"


async def test_per_stream_end_silence_override(vad) -> None:
    samples, rate = recording("endgame_nagg_nell.wav")
    data = samples.tobytes()
    default = await detect(vad, [config(rate, detector=SILENCE), *chunks(data, 9600)])
    short = await detect(vad, [config(rate, detector=SILENCE, end_silence_ms=300), *chunks(data, 9600)])
    ended = vad_pb2.SPEECH_EVENT_TYPE_ENDED
    assert sum(e.type == ended for e in short) > sum(e.type == ended for e in default) >= 1


async def test_odd_byte_counts_are_kept_as_remainder(vad) -> None:
    samples, rate = recording("beckett.wav")
    data = samples.tobytes()
    odd = [vad_pb2.StreamDetectRequest(audio=data[i : i + 333]) for i in range(0, len(data), 333)]
    assert as_tuples(await detect(vad, [config(rate), *odd])) == \
        as_tuples(await detect(vad, [config(rate), *chunks(data, 3200)]))


async def test_silence_gives_no_events(vad) -> None:
    assert await detect(vad, [config(16000), *chunks(bytes(16000 * 2 * 5), 640)]) == []


async def expect_error(stub, requests, code: grpc.StatusCode, text: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await detect(stub, requests)
    assert err.value.code() == code, err.value.details()
    assert text in err.value.details()


@pytest.mark.parametrize(("requests", "text"), [
    ([vad_pb2.StreamDetectRequest(audio=b"\x00\x00")], "first message must be config"),
    ([config(16000), config(16000)], "config was already sent"),
    ([config(96000)], "sample_rate_hz=96000 is not supported: use an integer rate from 8000 to 48000"),
    ([vad_pb2.StreamDetectRequest(config=vad_pb2.VadConfig())], "sample_rate_hz is required"),
    ([vad_pb2.StreamDetectRequest(config=vad_pb2.VadConfig(
        format=audio_pb2.AudioFormat(sample_rate_hz=16000, channels=2)))], "only mono"),
    ([config(16000, aggressiveness=7)], "use 0, 1, 2 or 3"),
    ([vad_pb2.StreamDetectRequest(config=vad_pb2.VadConfig(
        format=audio_pb2.AudioFormat(
            sample_rate_hz=16000, encoding=audio_pb2.AudioEncoding.ValueType(9))))], "encoding 9 is not supported"),
    ([config(16000, end_silence_ms=50)], "end_silence_ms=50 is out of range: use 100 to 10000"),
    ([config(16000), vad_pb2.StreamDetectRequest()], "empty request"),
])
async def test_bad_input_is_invalid_argument(vad, requests, text: str) -> None:
    await expect_error(vad, requests, grpc.StatusCode.INVALID_ARGUMENT, text)


async def test_oversized_message_is_resource_exhausted_and_service_stays_up(vad) -> None:
    huge = vad_pb2.StreamDetectRequest(audio=bytes(2 * 1024 * 1024))
    await expect_error(vad, [config(16000), huge], grpc.StatusCode.RESOURCE_EXHAUSTED, "")
    samples, rate = recording("beckett.wav")
    assert await detect(vad, [config(rate), *chunks(samples.tobytes(), 3200)])


async def test_garbage_bytes_are_absorbed(vad) -> None:
    noise = np.random.default_rng(3).integers(0, 256, 16000 * 2 * 3, dtype=np.uint8).tobytes()
    events = await detect(vad, [config(16000), *chunks(noise, 1001)])
    assert all(e.type != vad_pb2.SPEECH_EVENT_TYPE_UNSPECIFIED for e in events)


async def test_streams_beyond_the_limit_are_resource_exhausted(vad) -> None:
    gates = [asyncio.Event() for _ in range(4)]

    async def held(gate: asyncio.Event):
        yield config(16000)
        await gate.wait()

    calls = [vad.StreamDetect(held(g), timeout=30) for g in gates]
    await asyncio.sleep(0.3)
    await expect_error(vad, [config(16000)], grpc.StatusCode.RESOURCE_EXHAUSTED, "maximum of 4 streams")
    for gate in gates:
        gate.set()
    for call in calls:
        assert [r async for r in call] == []
    assert await detect(vad, [config(16000)]) == []


async def test_client_that_vanishes_frees_its_stream(vad) -> None:
    async def endless():
        yield config(16000)
        while True:
            yield vad_pb2.StreamDetectRequest(audio=bytes(640))
            await asyncio.sleep(0.001)

    for _ in range(6):  # more than max_streams: each cancelled stream must have been released
        call = vad.StreamDetect(endless(), timeout=30)
        await asyncio.sleep(0.05)
        call.cancel()
    await asyncio.sleep(0.2)
    assert await detect(vad, [config(16000), *chunks(bytes(6400), 640)]) == []


async def test_get_info_reports_the_defaults_in_effect(vad) -> None:
    assert SERVICE_NAME == "voice.v1.VadService"
    info = await vad.GetInfo(vad_pb2.VadServiceGetInfoRequest(), timeout=5)
    d = info.defaults
    assert (d.aggressiveness, d.frame_ms, d.min_speech_ms, d.end_silence_ms, d.pause_ms, d.pre_roll_ms) == \
        (3, 30, 200, 800, 200, 300)  # the seed's 200 ms voice and 800 ms silence
    assert info.max_streams == 4 and info.active_streams == 0


async def test_a_refusal_reaches_a_client_that_is_still_sending_with_its_real_code(vad) -> None:
    # gRPC's asyncio client turns a write after the server's status into INTERNAL; the server reads on.
    codes = []
    for _ in range(20):
        flood = [config(96000), *chunks(bytes(320_000), 640)]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in vad.StreamDetect(aiter_of(flood), timeout=30):
                pass
        codes.append(err.value.code())
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 20


async def aiter_of(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
