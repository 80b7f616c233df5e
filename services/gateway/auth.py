"""API keys for the public endpoints: gRPC metadata and the WebSocket's query or header."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from services.common.interceptor import rebuild

SCHEME = "bearer "
HINT = "send metadata 'authorization: Bearer <key>' (or 'x-api-key: <key>')"


def key_matches(expected: str, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(expected.encode(), offered.encode())


def offered_key(headers: Mapping[str, str]) -> str | None:
    """The key in an Authorization: Bearer or x-api-key header (names lower-case)."""
    value = headers.get("authorization", "")
    if value.lower().startswith(SCHEME):
        return value[len(SCHEME):].strip()
    return headers.get("x-api-key")


def _deny(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return rebuild(handler, lambda _: abort)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Guards one service's methods; health and reflection stay open for probes."""

    def __init__(self, key: str, service: str) -> None:
        self.key = key
        self.prefix = f"/{service}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self.prefix):
            return handler
        headers = {k.lower(): v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        if key_matches(self.key, offered_key(headers)):
            return handler
        return _deny(handler, f"missing or wrong API key: {HINT}")
