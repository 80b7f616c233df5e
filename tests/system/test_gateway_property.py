"""A property of the gateway: any sequence of requests ends with a clear status, never a crash."""

from __future__ import annotations

import asyncio

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.stack import Stack
from tests.support.speech import stream
from voice.v1 import gateway_pb2, gateway_pb2_grpc

# The whole system.


requests_strategy = st.lists(st.one_of(
    st.builds(lambda rate: gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=rate)),
              st.sampled_from([0, 7999, 8000, 16000, 22050, 48000, 48001])),
    st.builds(lambda data: gateway_pb2.ConverseRequest(audio=data), st.binary(max_size=2000)),
    st.builds(lambda action: gateway_pb2.ConverseRequest(control=action), st.integers(0, 5)),
    st.just(gateway_pb2.ConverseRequest()),
), max_size=30)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=requests_strategy)
def test_random_request_sequences_end_cleanly(stack: Stack, requests: list[gateway_pb2.ConverseRequest]) -> None:
    async def run():
        async with grpc.aio.insecure_channel(stack.gateway) as channel:
            return await stream(gateway_pb2_grpc.GatewayServiceStub(channel), requests, timeout=30)

    kinds, events, err = asyncio.run(run())
    # The server reads on before it ends a call, so even a client still writing sees the real code.
    if err is not None:
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), err
    for kind, event in zip(kinds, events, strict=True):
        if kind == "error" and event.session_continues:
            assert event.code == gateway_pb2.ERROR_CODE_INVALID_ARGUMENT
        elif kind == "error":  # the last word of a refused call says its status in band
            assert err is not None and gateway_pb2.ErrorCode.Name(event.code) == f"ERROR_CODE_{err.code().name}"
