"""Bad input to the gateway, each absorbed or answered with a clear error, while another session
on the same gateway carries on unharmed."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from harness.conversation import ENDS_TURN_MS, Conversation
from harness.stack import Stack
from services.gateway.config import GatewaySettings
from tests.support.speech import RATE, say, stream
from voice.v1 import gateway_pb2

pytestmark = pytest.mark.asyncio(loop_scope="module")
CONFIG = gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=RATE))


def question() -> np.ndarray:
    return say("Is anybody there?")


@pytest.mark.parametrize(("requests", "detail"), [
    ([gateway_pb2.ConverseRequest(audio=b"\x00\x00")], "first message must be the session config"),
    ([gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig())], "input_sample_rate_hz is required"),
    ([gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=96000))],
     "input_sample_rate_hz=96000 is not supported: use an integer rate from 8000 to 48000 Hz"),
    ([gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=RATE, voice="zz_x"))],
     "voice 'zz_x' is unknown"),
    # Huge values are quoted by a short prefix: the real error, not gRPC's "Stream removed".
    ([gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=RATE, voice="v" * 100_000))],
     "... (100000 characters) is unknown"),
    ([gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=RATE,
                                                                   session_id="s" * 200_000))],
     "session_id has 200000 characters; a session id has at most 128"),
])
async def test_bad_session_start_is_invalid_argument(gateway, requests, detail: str) -> None:
    _, _, err = await stream(gateway, requests)
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in err.details() and len(err.details()) < 2000


async def test_protocol_mistakes_mid_session_are_error_events_and_the_session_goes_on(gateway) -> None:
    speech = question()
    requests = [CONFIG, CONFIG, gateway_pb2.ConverseRequest(
                    control=gateway_pb2.ControlAction.ValueType(42)), gateway_pb2.ConverseRequest(),
                gateway_pb2.ConverseRequest(audio=np.zeros(RATE // 2, dtype=np.int16).tobytes())]
    requests += [gateway_pb2.ConverseRequest(audio=speech.tobytes()[i:i + 333])
                 for i in range(0, len(speech) * 2, 333)]  # odd byte counts
    requests.append(gateway_pb2.ConverseRequest(audio=np.zeros(RATE * 2, dtype=np.int16).tobytes()))
    requests.append(gateway_pb2.ConverseRequest(control=gateway_pb2.CONTROL_ACTION_END_OF_INPUT))
    kinds, events, err = await stream(gateway, requests)
    assert err is None
    errors = [e for k, e in zip(kinds, events, strict=True) if k == "error"]
    assert [e.message.split(":")[0] for e in errors] == [
        "the session is configured already", "unknown control action 42", "empty request"]
    assert all(e.code == gateway_pb2.ERROR_CODE_INVALID_ARGUMENT and e.session_continues for e in errors)
    assert "turn_completed" in kinds  # the odd-sized audio still made a turn


async def test_one_huge_message_is_resource_exhausted(gateway) -> None:
    _, _, err = await stream(gateway, [CONFIG, gateway_pb2.ConverseRequest(audio=bytes(5 * 1024 * 1024))])
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_ten_thousand_tiny_messages_are_absorbed(gateway) -> None:
    tiny = [gateway_pb2.ConverseRequest(audio=b"\x01\x00") for _ in range(10_000)]
    kinds, _, err = await stream(gateway, [CONFIG, *tiny,
                                           gateway_pb2.ConverseRequest(control=gateway_pb2.CONTROL_ACTION_END_OF_INPUT)])
    assert err is None and kinds == ["session_started"]


async def test_random_bytes_and_an_empty_stream(gateway) -> None:
    noise = np.random.default_rng(5).integers(0, 256, RATE * 2 * 3, dtype=np.uint8).tobytes()
    kinds, _, err = await stream(gateway, [CONFIG, *[gateway_pb2.ConverseRequest(audio=noise[i:i + 999])
                                                     for i in range(0, len(noise), 999)]])
    assert err is None and kinds[0] == "session_started" and "error" not in kinds
    kinds, _, err = await stream(gateway, [])
    assert err is None and kinds == []


async def test_another_session_does_not_notice(gateway) -> None:
    good = Conversation(gateway, gateway_pb2.SessionConfig(input_sample_rate_hz=RATE))
    await good.silence(300)
    await good.send(question())
    abusers = [stream(gateway, [CONFIG, gateway_pb2.ConverseRequest(audio=bytes(5 * 1024 * 1024))]),
               stream(gateway, [gateway_pb2.ConverseRequest(audio=b"xx")]),
               stream(gateway, [CONFIG, *[gateway_pb2.ConverseRequest(audio=b"\x7f") for _ in range(3000)]])]
    await asyncio.gather(*abusers)
    await good.silence(ENDS_TURN_MS)
    done = await good.wait_for("turn_completed")
    await good.finish()
    assert good.error is None and done.heard_text and not good.of("error")


async def test_audio_flooded_far_faster_than_real_time_is_slowed_not_stored(gateway, stack: Stack) -> None:
    """Three clients send the largest audio messages the gateway takes as fast as it reads them for 4 s: the gateway
    reads them no faster than the VAD takes audio (its memory stays within the byte budgets), and a
    normal session on it is answered meanwhile."""
    from bench.sessions import proc_usage

    pid = stack.services["gateway"].proc.pid
    before = proc_usage(pid)[1]
    largest = GatewaySettings(auth_disabled=True).max_message_bytes - 1024  # less the message's framing
    loud = (np.random.default_rng(3).standard_normal(largest // 2) * 3000).astype(np.int16).tobytes()

    async def flood() -> int:
        sent = 0
        deadline = asyncio.get_running_loop().time() + 4.0

        async def requests():
            nonlocal sent
            yield CONFIG
            while asyncio.get_running_loop().time() < deadline:
                sent += 1
                yield gateway_pb2.ConverseRequest(audio=loud)

        call = gateway.Converse(requests(), timeout=60)
        async for _ in call:
            pass
        return sent

    good = Conversation(gateway, gateway_pb2.SessionConfig(input_sample_rate_hz=RATE))
    await good.silence(300)
    floods = [asyncio.ensure_future(flood()) for _ in range(3)]
    await good.send(question(), pace=1.0)
    await good.silence(ENDS_TURN_MS, pace=1.0)
    done = await good.wait_for("turn_completed")
    sent = await asyncio.gather(*floods)
    peak = proc_usage(pid)[1]
    await good.finish()
    assert good.error is None and done.heard_text and not good.of("error")
    # 4 s of flooding at 16 kHz is far more than real time (32 kB/s) could carry: read, it would be
    # gigabytes; slowed, each flood got few messages through, and the gateway grew little.
    assert sum(sent) * len(loud) < 3 * 400 * 1_000_000
    assert peak - before < 150, f"gateway grew {peak - before:.0f} MB"


async def test_websocket_frames_that_are_no_request_are_errors_and_the_session_goes_on(stack: Stack) -> None:
    """Text frames that parse as JSON but are no request object (a number, null, a list, deep
    nesting, a wrong field type) each get an error event; the session then answers as usual."""
    import aiohttp

    bad = ["1", "null", "[]", "[" * 100_000 + "]" * 100_000, '{"config": 5}', '{"control": "NOPE"}', "{not json"]
    async with aiohttp.ClientSession() as client, \
            client.ws_connect(f"http://127.0.0.1:{stack.web_port}/ws", max_msg_size=0) as ws:
        await ws.send_json({"config": {"input_sample_rate_hz": RATE}})
        for frame in bad:
            await ws.send_str(frame)
        speech = np.concatenate([np.zeros(RATE * 3 // 10, np.int16), question(),
                                 np.zeros(RATE * ENDS_TURN_MS // 1000, np.int16)])
        for i in range(0, len(speech), RATE // 50):
            await ws.send_bytes(speech[i:i + RATE // 50].tobytes())
        events: list[dict] = []
        async with asyncio.timeout(60):
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    events.append(message.json())
                    if events[-1]["type"] == "turn_completed":
                        break
                elif message.type != aiohttp.WSMsgType.BINARY:
                    break
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == len(bad), errors
    assert all(e["code"] == "ERROR_CODE_INVALID_ARGUMENT" and e["session_continues"] for e in errors)
    assert events[-1]["type"] == "turn_completed" and events[-1]["heard_text"]
