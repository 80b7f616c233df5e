"""A gateway in the test's own process with no stages behind it: who may talk, and what it answers."""

from __future__ import annotations

from harness.local_redis import RedisProcess, free_port
from harness.stack import Stack
from services.common.server import GrpcServer
from services.gateway.config import GatewaySettings
from services.gateway.wiring import gateway_service
from tests.support.serving import serve

KEY = "k" * 40
NOWHERE = "127.0.0.1:9"  # stages are not needed to check who may talk


async def start(redis: RedisProcess, **overrides) -> tuple[GrpcServer, GatewaySettings]:
    """A gateway with no stages behind it; admission is off (it refuses every session while the
    model stages do not answer)."""
    settings = GatewaySettings(**{"port": 0, "grace_s": 0, "metrics_port": 0, "web_port": free_port(),
                                  "redis": {"url": redis.url}, "vad_target": NOWHERE, "voxtral_target": NOWHERE,
                                  "tts_target": NOWHERE, "admission": {"enabled": False}, **overrides})
    server, _ = await serve(settings, gateway_service(settings))
    return server, settings


def stack_stages(stack: Stack) -> dict[str, object]:
    """The shared system's stages, with the TTS deadline its own gateway has (the machine is busy)."""
    return {"vad_target": stack.services["vad"].target, "voxtral_target": stack.services["voxtral"].target,
            "tts_target": stack.services["tts"].target,
            "tts_timeout_s": float(stack.services["gateway"].env["GATEWAY_TTS_TIMEOUT_S"])}


def metadata(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)
