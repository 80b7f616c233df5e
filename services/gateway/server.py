"""GatewayService gRPC surface: requests become engine inputs, engine events become messages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from services.common.errors import InvalidArgument, PermissionDenied, ServiceError, echo
from services.common.interceptor import write_notice
from services.common.latency import summarize
from services.common.limits import check_session_id
from services.gateway.auth import Keys, grpc_caller
from services.gateway.engine.conversations import ConversationEngine
from services.gateway.engine.events import ErrorEvent, Event
from services.gateway.engine.inputs import Input
from services.gateway.engine.store import Store
from services.gateway.messages import to_input, to_message
from voice.v1 import gateway_pb2, gateway_pb2_grpc

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name
CONVERSE = f"/{SERVICE_NAME}/Converse"


def refusal(exc: ServiceError) -> gateway_pb2.ConverseResponse:
    """A refused or ended session's last message: the code in band, before the status."""
    return to_message(ErrorEvent(exc.status.client, str(exc), session_continues=False))


def notice(method: str, exc: ServiceError) -> gateway_pb2.ConverseResponse | None:
    return refusal(exc) if method == CONVERSE else None


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, engine: ConversationEngine, store: Store, keys: Keys) -> None:
        self.engine = engine
        self.store = store
        self.keys = keys

    async def Converse(  # type: ignore[override]  # writes with context.write instead of yielding
            self, request_iterator: AsyncIterator[gateway_pb2.ConverseRequest],
            context: grpc.aio.ServicerContext) -> None:
        async def inputs() -> AsyncIterator[Input]:
            async for request in request_iterator:
                yield to_input(request)

        async def send(event: Event) -> None:
            await context.write(to_message(event))

        try:
            await self.engine.converse(inputs(), send, grpc_caller(self.keys, context))
        except ServiceError as exc:
            # Said in band first; the interceptor then reads what the client still sends and ends the call.
            await write_notice(context, refusal(exc))
            raise

    async def GetSessionMetrics(self, request: gateway_pb2.GetSessionMetricsRequest,
                                context: grpc.aio.ServicerContext) -> gateway_pb2.GetSessionMetricsResponse:
        if not request.session_id:
            raise InvalidArgument("session_id is required")
        check_session_id(request.session_id)
        owner = await self.store.owner(request.session_id)
        if owner is not None and owner != grpc_caller(self.keys, context).identity:
            raise PermissionDenied(f"session {echo(request.session_id)} was started with another API key: only its "
                                   "creator can read its metrics")
        turns = await self.store.turns(request.session_id)
        summary = summarize(turns)
        return gateway_pb2.GetSessionMetricsResponse(
            session_id=request.session_id, turns=len(turns),
            stages=[gateway_pb2.StageLatency(metric=name, p50_ms=p50, p95_ms=p95, samples=n)
                    for name, (p50, p95, n) in summary.items()])
