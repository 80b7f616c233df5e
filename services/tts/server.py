"""TtsService gRPC surface: translates messages; the work is in synthesizer.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from services.common.load_message import stage_load_message
from services.common.ready import Ready
from services.common.server import ServiceSpec
from services.tts.config import TtsSettings
from services.tts.engine import MAX_PHONEMES, OnnxEngine, SpeechEngine, TorchEngine, count_phonemes
from services.tts.phonemes import shared_phonemizer
from services.tts.synthesizer import Synthesizer
from services.tts.voices import VoiceBank
from voice.v1 import tts_pb2, tts_pb2_grpc

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TtsService"].full_name
KOKORO_CONFIG = "config.json"


def load_engine(settings: TtsSettings) -> SpeechEngine:
    folder = settings.models_dir
    voices = folder / settings.voices_file
    if settings.resolved_backend() == "onnx":
        model = folder / settings.onnx_model
        if not model.exists() or not voices.exists():
            raise FileNotFoundError(f"Kokoro ONNX files missing in {folder}: run `make models`")
        return OnnxEngine(model, voices, settings.onnx_threads, settings.onnx_spinning)
    weights = folder / settings.torch_weights
    if not weights.exists():
        raise FileNotFoundError(
            f"{weights} is missing: the kokoro backend needs hexgrad/Kokoro-82M's {settings.torch_weights} "
            "(put it in TTS_MODELS_DIR, or set TTS_BACKEND=onnx)"
        )
    return TorchEngine(folder / KOKORO_CONFIG, weights, settings.resolved_device())


class TtsServicer(tts_pb2_grpc.TtsServiceServicer):
    def __init__(self, settings: TtsSettings) -> None:
        self.settings = settings
        self.synthesizer: Ready[Synthesizer] = Ready("the TTS")

    def load(self) -> None:
        engine = load_engine(self.settings)
        voices = VoiceBank(self.settings.models_dir / self.settings.voices_file)
        voices.pack(self.settings.default_voice)
        phonemizer = shared_phonemizer()
        phonemizer.warm_up()
        synthesizer = Synthesizer(self.settings, engine, voices, phonemizer)
        synthesizer.render("Warming up.", self.settings.default_voice, 1.0)
        # The longest input the model takes, once: the runtime's buffers reach their high-water
        # mark now, not over the first hours of traffic (memory then stays flat). With the short
        # one it is also the first measure of what a phoneme costs.
        longest = ("həlˈO ðˈɛɹ " * 64)[: MAX_PHONEMES - 2]
        started = time.perf_counter()
        engine.synthesize(longest, voices.pack(self.settings.default_voice), 1.0)
        synthesizer.cost.observe(count_phonemes(engine.vocab, longest), (time.perf_counter() - started) * 1000)
        self.synthesizer.set(synthesizer)

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        synthesizer = self.synthesizer.get()
        speech = synthesizer.check(request.text, request.voice,
                                        request.speed if request.HasField("speed") else None, request.sample_rate_hz,
                                   request.more_follows, request.need_in_ms)
        if speech is None:
            return
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        async for chunk in synthesizer.stream(speech, deadline):
            yield tts_pb2.SynthesizeResponse(
                audio=chunk.pcm, text=chunk.text, sample_rate_hz=chunk.sample_rate_hz,
                segment_index=chunk.segment_index, compute_ms=chunk.compute_ms, voice=chunk.voice, speed=chunk.speed,
                queue_ms=chunk.queue_ms,
            )

    async def GetLoad(self, request: tts_pb2.TtsServiceGetLoadRequest,
                      context: grpc.aio.ServicerContext) -> tts_pb2.TtsServiceGetLoadResponse:
        return tts_pb2.TtsServiceGetLoadResponse(load=stage_load_message(self.synthesizer.get().load()))

    async def ListVoices(self, request: tts_pb2.ListVoicesRequest,
                         context: grpc.aio.ServicerContext) -> tts_pb2.ListVoicesResponse:
        synthesizer = self.synthesizer.get()
        voices = synthesizer.voices
        return tts_pb2.ListVoicesResponse(
            voices=[tts_pb2.Voice(name=v.name, language=v.language, gender=v.gender)
                    for v in map(voices.info, voices.names())],
            default_voice=self.settings.default_voice,
            backend=f"{synthesizer.engine.backend} ({synthesizer.engine.device})",
        )


def tts_service(settings: TtsSettings) -> ServiceSpec:
    servicer = TtsServicer(settings)

    async def warm_up() -> None:
        await asyncio.to_thread(servicer.load)

    async def close() -> None:
        if servicer.synthesizer.value is not None:
            servicer.synthesizer.value.close()

    return ServiceSpec(
        SERVICE_NAME, lambda server: tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server), warm_up, close,
        servicer,
    )
