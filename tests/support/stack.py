"""The whole system as real processes on loopback: Redis, VAD, Voxtral (small model), TTS, gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import ServiceProcess
from tools.local_redis import RedisProcess, free_port


class Stack:
    def __init__(self, voxtral_model: Path, voxtral_env: dict[str, str] | None = None,
                 tts_env: dict[str, str] | None = None, **overrides: str) -> None:
        self.redis = RedisProcess()
        self.redis.start()
        self.metrics_port = free_port()
        self.web_port = free_port()
        quiet = {"LOG_LEVEL": "INFO"}
        self.services: dict[str, ServiceProcess] = {
            "vad": ServiceProcess("services.vad", "VAD_", {f"VAD_{k}": v for k, v in quiet.items()}),
            "voxtral": ServiceProcess("services.voxtral", "VOXTRAL_", {
                "VOXTRAL_MODEL_ID": str(voxtral_model), "VOXTRAL_COMPILE_MODE": "eager", "VOXTRAL_SEED": "0",
                "VOXTRAL_MAX_NEW_TOKENS": "12", "VOXTRAL_TRANSCRIBE_MAX_NEW_TOKENS": "8", "HF_HUB_OFFLINE": "1",
                **(voxtral_env or {})}),
            "tts": ServiceProcess("services.tts", "TTS_", {"TTS_BACKEND": "onnx", "TTS_TIMEOUT_S": "10",
                                                          **(tts_env or {})}),
        }
        for service in self.services.values():
            service.wait_listening()
        gateway_env = {
            "GATEWAY_VAD_TARGET": self.services["vad"].target,
            "GATEWAY_VOXTRAL_TARGET": self.services["voxtral"].target,
            "GATEWAY_TTS_TARGET": self.services["tts"].target,
            "GATEWAY_REDIS__URL": self.redis.url,
            "GATEWAY_METRICS_PORT": str(self.metrics_port),
            "GATEWAY_WEB_PORT": str(self.web_port),
            "GATEWAY_TTS_TIMEOUT_S": "10",
            "GATEWAY_AUTH_DISABLED": "true",
            **overrides,
        }
        self.services["gateway"] = ServiceProcess("services.gateway", "GATEWAY_", gateway_env)
        for service in self.services.values():
            service.wait_serving()

    @property
    def gateway(self) -> str:
        return self.services["gateway"].target

    def restart(self, name: str) -> None:
        self.services[name] = self.services[name].restarted()
        self.services[name].wait_serving()

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        self.redis.stop()


@pytest.fixture(scope="session")
def stack(tiny_voxtral: Path):
    """One running system shared by the end-to-end tests (each leaves it running)."""
    running = Stack(tiny_voxtral)
    yield running
    running.stop()
