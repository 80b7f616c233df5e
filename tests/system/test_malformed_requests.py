"""Bytes that are no message of a method's request type, sent to every RPC of every service (real
processes): each answers INVALID_ARGUMENT, never INTERNAL or UNKNOWN, and goes on serving."""

from __future__ import annotations

import grpc
import pytest

from harness.stack import Stack
from services.common.healthcheck import check
from tests.support.grpc_methods import methods

pytestmark = pytest.mark.asyncio(loop_scope="module")
GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field whose length runs past the end: no message at all
@pytest.mark.parametrize(("service", "path", "client_streaming", "server_streaming"), methods())
async def test_malformed_bytes_are_invalid_argument(stack: Stack, service: str, path: str, client_streaming: bool,
                                                    server_streaming: bool) -> None:
    target = stack.services[service].target
    raw = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            if client_streaming:
                async def requests():
                    yield GARBAGE

                call = channel.stream_stream(path, **raw)(requests(), timeout=30) if server_streaming \
                    else channel.stream_unary(path, **raw)(requests(), timeout=30)
            else:
                call = channel.unary_stream(path, **raw)(GARBAGE, timeout=30) if server_streaming \
                    else channel.unary_unary(path, **raw)(GARBAGE, timeout=30)
            if server_streaming:
                async for _ in call:
                    pass
            else:
                await call
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "the request could not be read" in err.value.details()
    assert check(target, timeout_s=5.0) == "SERVING"
