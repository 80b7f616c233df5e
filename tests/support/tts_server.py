"""A TTS service on the real Kokoro files in the test's own process, and reading what it says."""

from __future__ import annotations

import grpc
import numpy as np

from services.common.channels import open_channel
from services.common.server import GrpcServer
from services.tts.config import TtsSettings
from services.tts.server import tts_service
from tests.support.serving import serve
from voice.v1 import tts_pb2, tts_pb2_grpc

TTS = tts_pb2.DESCRIPTOR.services_by_name["TtsService"]


async def start(**overrides) -> tuple[GrpcServer, tts_pb2_grpc.TtsServiceStub, grpc.aio.Channel]:
    settings = TtsSettings(port=0, grace_s=0, **overrides)
    server, target = await serve(settings, tts_service(settings))
    channel = open_channel(target, TTS)
    return server, tts_pb2_grpc.TtsServiceStub(channel), channel


async def speak(stub, text: str, **fields) -> list[tts_pb2.SynthesizeResponse]:
    return [r async for r in stub.Synthesize(tts_pb2.SynthesizeRequest(text=text, **fields), timeout=60)]


def pcm(chunks) -> np.ndarray:
    return np.frombuffer(b"".join(c.audio for c in chunks), dtype="<i2")
