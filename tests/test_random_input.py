"""Random bytes into every gRPC method of every service and random JSON into the WebSocket (real
processes): never INTERNAL or UNKNOWN, and a bystander session is served throughout."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.healthcheck import check
from tests.test_malformed_requests import methods
from tools.stack import Stack
from voice.v1 import gateway_pb2, gateway_pb2_grpc

pytestmark = pytest.mark.system

NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
RAW = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["config", "control", "playback", "audio", "input_sample_rate_hz", "turn_id", "played_ms",
                         "voice", "session_id", "x"]) | st.text(max_size=10), inner, max_size=5),
    max_leaves=20)


async def call_with(target: str, path: str, client_streaming: bool, server_streaming: bool,
                    messages: list[bytes]) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            if client_streaming:
                async def requests():
                    for message in messages:
                        yield message

                call = channel.stream_stream(path, **RAW)(requests(), timeout=30) if server_streaming \
                    else channel.stream_unary(path, **RAW)(requests(), timeout=30)
            else:
                call = channel.unary_stream(path, **RAW)(messages[0], timeout=30) if server_streaming \
                    else channel.unary_unary(path, **RAW)(messages[0], timeout=30)
            if server_streaming:
                async for _ in call:
                    pass
            else:
                await call
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


class Bystander:
    """A well-behaved gRPC session open on the gateway while the others misbehave."""

    def __init__(self, gateway: str) -> None:
        self.done = asyncio.Event()
        self.channel = grpc.aio.insecure_channel(gateway)

        async def requests():
            yield gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=16000))
            while not self.done.is_set():
                yield gateway_pb2.ConverseRequest(audio=bytes(640))  # 20 ms of silence
                await asyncio.sleep(0.02)
            yield gateway_pb2.ConverseRequest(control=gateway_pb2.CONTROL_ACTION_END_OF_INPUT)

        self.call = gateway_pb2_grpc.GatewayServiceStub(self.channel).Converse(requests(), timeout=600)

    async def finish(self) -> list[str]:
        """End it; the kinds of everything it was sent. Raises if its call failed."""
        self.done.set()
        kinds = [m.WhichOneof("payload") async for m in self.call]
        await self.channel.close()
        return kinds


def test_random_bytes_into_every_method_of_every_service(stack: Stack) -> None:
    every = methods()

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(which=st.integers(0, len(every) - 1), messages=st.lists(st.binary(max_size=300), min_size=1, max_size=4))
    def one(which: int, messages: list[bytes]) -> None:
        service, path, client_streaming, server_streaming = every[which]
        code = asyncio.run(call_with(stack.services[service].target, path, client_streaming, server_streaming,
                                     messages))
        assert code not in NEVER, (path, messages)

    async def around() -> list[str]:
        bystander = Bystander(stack.gateway)
        await asyncio.to_thread(one)
        return await bystander.finish()

    kinds = asyncio.run(around())
    assert kinds[0] == "session_started" and "error" not in kinds
    for service in stack.services.values():
        assert check(service.target, timeout_s=5.0) == "SERVING"


def test_random_json_into_the_websocket_leaves_the_session_and_others_working(stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.web_port}/ws"

    async def run(values: list[Any]) -> None:
        bystander = Bystander(stack.gateway)
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            for value in values[:2]:  # before the config: each an error, the socket stays
                await ws.send_str(json.dumps(value))
            await ws.send_json({"config": {"input_sample_rate_hz": 16000}})
            for value in values[2:]:
                await ws.send_str(json.dumps(value))
            await ws.send_json({"control": "CONTROL_ACTION_END_OF_INPUT"})
            seen = []
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(frame.data)
                    seen.append(event)
                    if event["type"] == "error":
                        assert event["code"] not in ("ERROR_CODE_INTERNAL", "ERROR_CODE_UNSPECIFIED"), event
            if not any(e["type"] == "session_started" for e in seen):  # a value that was a bad config ends it
                assert seen[-1]["type"] == "error" and not seen[-1]["session_continues"], seen
                assert seen[-1]["code"] == "ERROR_CODE_INVALID_ARGUMENT", seen
        kinds = await bystander.finish()
        assert kinds[0] == "session_started" and "error" not in kinds

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(values=st.lists(json_values, min_size=2, max_size=12))
    def one(values: list[Any]) -> None:
        asyncio.run(run(values))

    one()
