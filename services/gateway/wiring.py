"""The gateway's composition root: stages, store, engine, and the adapters over it."""

from __future__ import annotations

import logging

from services.common.server import ServiceSpec
from services.common.store import SessionStore
from services.gateway.auth import ApiKeyInterceptor, Keys
from services.gateway.config import GatewaySettings
from services.gateway.engine.conversations import ConversationEngine
from services.gateway.grpc_stages import GrpcStages
from services.gateway.metrics import GatewayMetrics
from services.gateway.server import SERVICE_NAME, GatewayServicer, notice
from services.gateway.web import WebBridge
from voice.v1 import gateway_pb2_grpc

log = logging.getLogger(__name__)


def gateway_service(settings: GatewaySettings, metrics: GatewayMetrics | None = None) -> ServiceSpec:
    metrics = metrics or GatewayMetrics()
    stages = GrpcStages(settings, metrics)
    store = SessionStore(settings.redis)
    engine = ConversationEngine(settings, stages, store, metrics)
    keys = Keys(settings.keys())
    servicer = GatewayServicer(engine, store, keys)
    bridge = WebBridge(settings, engine, keys) if settings.web_enabled else None

    async def warm_up() -> None:
        stages.connect()
        engine.start()
        if not await store.ping():
            log.warning("redis unreachable at start; sessions go on without context until it is back")
        if bridge is not None:
            await bridge.start()

    async def close() -> None:
        if bridge is not None:
            await bridge.stop()
        await engine.close()

    if not keys.required:
        log.warning("API keys are off (GATEWAY_AUTH_DISABLED): anyone who reaches this port can talk")
    return ServiceSpec(
        SERVICE_NAME, lambda server: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server),
        warm_up, close, servicer,
        interceptors=(ApiKeyInterceptor(keys, SERVICE_NAME, notice),) if keys.required else (),
        drain=engine.drain,
    )
