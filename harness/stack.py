"""The whole system as real processes on loopback: Redis, VAD, Voxtral (small model), TTS, gateway.
Used by the system tests and the benchmarks."""

from __future__ import annotations

import signal
from pathlib import Path

from harness.local_redis import RedisProcess, free_port
from harness.processes import ServiceProcess


class Stack:
    def __init__(self, voxtral_model: Path, voxtral_env: dict[str, str] | None = None,
                 tts_env: dict[str, str] | None = None, every_env: dict[str, str] | None = None,
                 **overrides: str) -> None:
        """`every_env`: settings for every service (OTEL_* say); `overrides`: the gateway's."""
        every = every_env or {}
        self.redis = RedisProcess()
        self.redis.start()
        self.metrics_port = free_port()
        self.web_port = free_port()
        self.stage_metrics_ports = {"voxtral": free_port(), "tts": free_port()}
        quiet = {"LOG_LEVEL": "INFO"}
        self.services: dict[str, ServiceProcess] = {
            "vad": ServiceProcess("services.vad", "VAD_", {**every, **{f"VAD_{k}": v for k, v in quiet.items()}}),
            "voxtral": ServiceProcess("services.voxtral", "VOXTRAL_", {
                **every, "VOXTRAL_MODEL_ID": str(voxtral_model), "VOXTRAL_COMPILE_MODE": "eager", "VOXTRAL_SEED": "0",
                "VOXTRAL_MAX_NEW_TOKENS": "12", "VOXTRAL_TRANSCRIBE_MAX_NEW_TOKENS": "8", "HF_HUB_OFFLINE": "1",
                "VOXTRAL_METRICS_PORT": str(self.stage_metrics_ports["voxtral"]), **(voxtral_env or {})}),
            "tts": ServiceProcess("services.tts", "TTS_", {
                **every, "TTS_BACKEND": "onnx", "TTS_TIMEOUT_S": "10",
                "TTS_METRICS_PORT": str(self.stage_metrics_ports["tts"]), **(tts_env or {})}),
        }
        for service in self.services.values():  # warm before the gateway's admission first asks their load
            service.wait_serving()
        gateway_env = {
            **every,
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
        self.services["gateway"].wait_serving()
        self._envs = {name: dict(service.env) for name, service in self.services.items()}

    @property
    def gateway(self) -> str:
        return self.services["gateway"].target

    def restart(self, name: str) -> None:
        self.services[name] = self.services[name].restarted()
        self.services[name].wait_serving()

    def reconfigure(self, name: str, **env: str) -> None:
        """Run service `name` again on its port with these settings added (restore() undoes it)."""
        old = self.services[name]
        old.kill()
        self.services[name] = ServiceProcess(old.module, old.env_prefix, {**self._envs[name], **env}, old.port)
        self.services[name].wait_serving()

    def restore(self) -> None:
        """Everything as the stack started it, after a test that killed, paused, stopped or
        reconfigured a part; parts that are as they were are left alone."""
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            self.redis.start()
        for name, service in self.services.items():
            if service.proc.poll() is None:
                service.proc.send_signal(signal.SIGCONT)  # a paused process runs again
            if service.proc.poll() is not None or service.env != self._envs[name]:
                service.kill()
                self.services[name] = ServiceProcess(service.module, service.env_prefix, self._envs[name],
                                                     service.port)
        for service in self.services.values():
            service.wait_serving()

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        self.redis.stop()
