"""A process that serves the voice.v1 TtsService contract through the real bootstrap.

It exists to test the bootstrap (health, drain, limits, error mapping, channel retries and
balancing), not speech: ListVoices sleeps PROBE_CALL_S and names its own port; its first
PROBE_FAIL_FIRST calls fail with UNAVAILABLE; Synthesize raises what the text asks for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from pydantic_settings import SettingsConfigDict

from services.common.errors import InvalidArgument, Unavailable
from services.common.logs import configure_logging
from services.common.server import ServiceSpec, run_service
from services.common.settings import ServerSettings, load_settings
from voice.v1 import tts_pb2, tts_pb2_grpc


class ProbeSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="PROBE_", frozen=True)
    warmup_s: float = 0.0
    call_s: float = 0.0
    fail_first: int = 0


class ProbeServicer(tts_pb2_grpc.TtsServiceServicer):
    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self.calls = 0
        self.port = 0

    async def ListVoices(self, request: tts_pb2.ListVoicesRequest, context: grpc.aio.ServicerContext):
        self.calls += 1
        if self.calls <= self.settings.fail_first:
            raise Unavailable(f"probe refuses call {self.calls}")
        await asyncio.sleep(self.settings.call_s)
        return tts_pb2.ListVoicesResponse(backend=f"probe:{self.port}", default_voice=str(self.calls))

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        yield tts_pb2.SynthesizeResponse(text="first")
        if request.text == "invalid":
            raise InvalidArgument("text 'invalid' is refused by the probe")
        if request.text == "crash":
            raise RuntimeError("probe crashed")
        yield tts_pb2.SynthesizeResponse(text=request.text, audio=bytes(len(request.text)))


    async def GetLoad(self, request: tts_pb2.TtsServiceGetLoadRequest, context: grpc.aio.ServicerContext):
        raise NotImplementedError("the probe runs no model and measures no load")


async def main() -> None:
    settings = load_settings(ProbeSettings)
    configure_logging("probe", settings.log_level)
    servicer = ProbeServicer(settings)

    async def warm_up() -> None:
        await asyncio.sleep(settings.warmup_s)

    def register(server: grpc.aio.Server) -> None:
        tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server)

    spec = ServiceSpec(tts_pb2.DESCRIPTOR.services_by_name["TtsService"].full_name, register, warm_up)
    servicer.port = settings.port
    await run_service(settings, [spec])


if __name__ == "__main__":
    asyncio.run(main())
