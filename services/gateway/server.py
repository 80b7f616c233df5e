"""GatewayService gRPC surface: requests become engine inputs, engine events become messages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from services.common.errors import InvalidArgument, ServiceError
from services.common.latency import summarize
from services.common.store import SessionStore
from services.gateway.engine.conversations import ConversationEngine
from services.gateway.engine.events import Event
from services.gateway.engine.inputs import Input
from services.gateway.messages import to_input, to_message
from voice.v1 import gateway_pb2, gateway_pb2_grpc

# A refused call first reads what the client already sent, so it gets our status, not a failed write.
DRAIN_ON_ERROR_S = 0.25
SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, engine: ConversationEngine, store: SessionStore) -> None:
        self.engine = engine
        self.store = store

    async def Converse(  # type: ignore[override]  # writes with context.write instead of yielding
            self, request_iterator: AsyncIterator[gateway_pb2.ConverseRequest],
            context: grpc.aio.ServicerContext) -> None:
        async def inputs() -> AsyncIterator[Input]:
            async for request in request_iterator:
                yield to_input(request)

        async def send(event: Event) -> None:
            await context.write(to_message(event))

        try:
            await self.engine.converse(inputs(), send)
        except ServiceError:
            async def drain() -> None:
                async for _ in request_iterator:
                    pass

            with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
                await asyncio.wait_for(drain(), DRAIN_ON_ERROR_S)
            raise

    async def GetSessionMetrics(self, request: gateway_pb2.GetSessionMetricsRequest,
                                context: grpc.aio.ServicerContext) -> gateway_pb2.GetSessionMetricsResponse:
        if not request.session_id:
            raise InvalidArgument("session_id is required")
        turns = await self.store.turns(request.session_id)
        summary = summarize(turns)
        return gateway_pb2.GetSessionMetricsResponse(
            session_id=request.session_id, turns=len(turns),
            stages=[gateway_pb2.StageLatency(metric=name, p50_ms=p50, p95_ms=p95, samples=n)
                    for name, (p50, p95, n) in summary.items()])
