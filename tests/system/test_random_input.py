"""Random bytes into every gRPC method of every service and random JSON into the WebSocket (real
processes): never INTERNAL or UNKNOWN, and a bystander session is served throughout."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.stack import Stack
from services.common.healthcheck import check
from tests.support.grpc_methods import methods
from voice.v1 import gateway_pb2, gateway_pb2_grpc

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


realtime_events = st.one_of(
    json_values,
    st.fixed_dictionaries({"type": st.sampled_from([
        "session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
        "conversation.item.create", "conversation.item.truncate", "response.create", "response.cancel",
        "output_audio_buffer.clear", "session.created"])}, optional={
        "session": json_values | st.fixed_dictionaries({}, optional={
            "audio": json_values | st.fixed_dictionaries({}, optional={
                "input": json_values | st.fixed_dictionaries({}, optional={
                    "format": json_values | st.fixed_dictionaries({"type": st.sampled_from(
                        ["audio/pcm", "audio/pcmu", "audio/pcma"]) | json_values}, optional={"rate": json_values}),
                    "turn_detection": json_values | st.fixed_dictionaries(
                        {"type": st.sampled_from(["server_vad", "semantic_vad"]) | json_values}, optional={
                            k: json_values for k in ("eagerness", "silence_duration_ms", "create_response",
                                                     "threshold", "idle_timeout_ms")}),
                    "noise_reduction": json_values}),
                "output": json_values | st.fixed_dictionaries({}, optional={
                    "format": json_values, "voice": json_values, "speed": json_values})}),
            "instructions": json_values, "tools": json_values, "output_modalities": json_values,
            "voice": json_values, "speed": json_values, "turn_detection": json_values,
            "input_audio_format": json_values, "modalities": json_values, "model": json_values}),
        "audio": json_values | st.binary(max_size=64).map(lambda b: __import__("base64").b64encode(b).decode()),
        "item": json_values, "item_id": json_values, "audio_end_ms": json_values, "response": json_values,
        "content_index": json_values, "event_id": json_values}),
)


def test_random_events_into_the_realtime_endpoint_get_errors_not_a_dropped_session(stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.web_port}/v1/realtime"

    async def run(events: list[Any]) -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "session.created"
            for event in events:
                await ws.send_str(json.dumps(event))
            await ws.send_json({"type": "session.update", "session": {"instructions": "still here"}})
            while True:  # every event is answered or absorbed; the last update is answered
                frame = await ws.receive(timeout=30)
                assert frame.type == aiohttp.WSMsgType.TEXT, frame
                body = json.loads(frame.data)
                if body["type"] == "error":
                    assert body["error"]["type"] == "invalid_request_error", body
                if body["type"] == "session.updated" and body["session"]["instructions"] == "still here":
                    break

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(events=st.lists(realtime_events, min_size=1, max_size=8))
    def one(events: list[Any]) -> None:
        asyncio.run(run(events))

    logged = len(stack.services["gateway"].logs)
    one()
    failures = [e for e in stack.services["gateway"].logs[logged:] if "exc" in e]
    assert not failures, failures[:3]  # every bad event was answered as the client's, never as a bug of ours
