"""VoxtralService gRPC surface: checks and translates messages; the model work is in engine.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np

from services.common.audio import pcm16_samples
from services.common.errors import InvalidArgument
from services.common.logs import bound
from services.common.server import ServiceSpec
from services.common.slots import SlotPool
from services.voxtral.config import VoxtralSettings
from services.voxtral.engine import VoxtralEngine
from services.voxtral.generation import GenerationParams
from services.voxtral.prompts import SAMPLE_RATE, Turn
from voice.v1 import voxtral_pb2, voxtral_pb2_grpc

SERVICE_NAME = voxtral_pb2.DESCRIPTOR.services_by_name["VoxtralService"].full_name
ROLES = {voxtral_pb2.ROLE_USER: "user", voxtral_pb2.ROLE_ASSISTANT: "assistant"}
FINISH = {"stop": voxtral_pb2.FINISH_REASON_STOP, "length": voxtral_pb2.FINISH_REASON_LENGTH,
          "cancelled": voxtral_pb2.FINISH_REASON_CANCELLED}
# A queued reply goes before a queued transcription: the user waits on the one, only the context on the other.
RESPOND_PRIORITY, TRANSCRIBE_PRIORITY = 0, 1
OPTION_FIELDS = ("max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty")


class VoxtralServicer(voxtral_pb2_grpc.VoxtralServiceServicer):
    def __init__(self, settings: VoxtralSettings) -> None:
        self.settings = settings
        self.engine: VoxtralEngine | None = None
        self.pool = SlotPool(settings.slots, settings.max_queue, "voxtral")
        self.defaults = GenerationParams.defaults(settings)

    def load(self) -> None:
        engine = VoxtralEngine(self.settings)
        engine.warm_up()
        self.engine = engine

    def _audio(self, audio: bytes, rate: int) -> np.ndarray:
        if rate != SAMPLE_RATE:
            raise InvalidArgument(f"sample_rate_hz={rate} is not supported: send PCM16 mono at {SAMPLE_RATE} Hz")
        if not audio:
            raise InvalidArgument("audio is empty: send the utterance as PCM16 mono at 16000 Hz")
        samples = pcm16_samples(audio)
        seconds = len(samples) / SAMPLE_RATE
        if seconds > self.settings.max_audio_s:
            raise InvalidArgument(f"audio lasts {seconds:.1f} s; the limit is {self.settings.max_audio_s:g} s")
        return samples

    def _params(self, options: voxtral_pb2.GenerationOptions) -> GenerationParams:
        changes = {name: getattr(options, name) for name in OPTION_FIELDS if options.HasField(name)}
        return self.defaults.override(self.settings.max_new_tokens_limit, **changes)

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        return time.monotonic() + (self.settings.request_timeout_s if remaining is None else remaining)

    async def Respond(
        self, request: voxtral_pb2.RespondRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[voxtral_pb2.RespondResponse]:
        received = time.perf_counter()
        with bound(session_id=request.session_id or None, turn_id=request.turn_id or None):
            engine = self.engine
            assert engine is not None
            samples = self._audio(request.audio, request.sample_rate_hz)
            params = self._params(request.generation)
            history = [Turn(ROLES.get(t.role, ""), t.text) for t in request.history]
            inputs = engine.prompts.chat(samples, history, request.instructions or self.settings.instructions,
                                         self.settings.max_context_tokens - params.max_new_tokens)
            deadline = self._deadline(context)
            loop = asyncio.get_running_loop()
            deltas: asyncio.Queue[str | None] = asyncio.Queue()  # None: generation is over
            stop = threading.Event()
            queued_at = time.perf_counter()
            async with self.pool.slot(deadline, priority=RESPOND_PRIORITY) as slot:
                queued_ms = (time.perf_counter() - queued_at) * 1000
                work = asyncio.ensure_future(slot.run(
                    lambda: engine.generate(inputs, params, lambda d: loop.call_soon_threadsafe(deltas.put_nowait, d),
                                            stop, deadline), deadline + 1.0))
                # Deltas the worker queued come first: its completion reaches the loop after them.
                work.add_done_callback(lambda _: deltas.put_nowait(None))
                ttft_ms: float | None = None
                try:
                    while (delta := await deltas.get()) is not None:
                        message = voxtral_pb2.RespondResponse(
                            text_delta=delta, elapsed_ms=(time.perf_counter() - received) * 1000)
                        if ttft_ms is None:
                            ttft_ms = message.elapsed_ms
                            message.ttft_ms = ttft_ms
                        yield message
                    result = work.result()
                finally:
                    stop.set()  # a cancelled or failed call stops generating within one decode step
            if result.finish_reason == "cancelled":
                raise TimeoutError("Voxtral ran past the call's deadline")
            yield voxtral_pb2.RespondResponse(elapsed_ms=(time.perf_counter() - received) * 1000,
                                              stats=voxtral_pb2.GenerationStats(
                prompt_tokens=len(inputs.tokens), audio_tokens=inputs.audio_tokens,
                completion_tokens=result.completion_tokens, queue_ms=queued_ms, prefill_ms=result.prefill_ms,
                decode_ms=result.decode_ms, ttft_ms=ttft_ms or 0.0, finish_reason=FINISH[result.finish_reason],
            ))

    async def Transcribe(self, request: voxtral_pb2.TranscribeRequest, context: grpc.aio.ServicerContext):
        started = time.perf_counter()
        engine = self.engine
        assert engine is not None
        samples = self._audio(request.audio, request.sample_rate_hz)
        language = request.language or self.settings.transcribe_language
        if len(language) != 2 or not language.isalpha() or not language.islower():
            raise InvalidArgument(f"language={language!r} is not an ISO 639-1 code such as 'en' or 'fr'")
        inputs = engine.prompts.transcription(samples, language)
        params = GenerationParams(self.settings.transcribe_max_new_tokens, 0, 0.0, 1.0, 0, 1.0)
        deadline = self._deadline(context)
        stop = threading.Event()
        async with self.pool.slot(deadline, priority=TRANSCRIBE_PRIORITY) as slot:
            try:
                result = await slot.run(lambda: engine.generate(inputs, params, lambda _: None, stop, deadline),
                                        deadline + 1.0)
            finally:
                stop.set()
        if result.finish_reason == "cancelled":
            raise TimeoutError("transcription ran past the call's deadline")
        return voxtral_pb2.TranscribeResponse(text=result.text.strip(), language=language,
                                              compute_ms=(time.perf_counter() - started) * 1000)

    async def GetInfo(self, request: voxtral_pb2.GetInfoRequest, context: grpc.aio.ServicerContext):
        engine = self.engine
        assert engine is not None
        d = self.defaults
        return voxtral_pb2.GetInfoResponse(
            model_id=self.settings.model_id, dtype=engine.dtype, device=engine.device,
            compile_mode=engine.compile_mode, kv_cache=engine.kv_cache, attention=self.settings.attention,
            generation_slots=self.settings.slots, queue_size=self.settings.max_queue,
            generation_defaults=voxtral_pb2.GenerationOptions(
                max_new_tokens=d.max_new_tokens, min_new_tokens=d.min_new_tokens, temperature=d.temperature,
                top_p=d.top_p, top_k=d.top_k, repetition_penalty=d.repetition_penalty),
        )


def voxtral_service(settings: VoxtralSettings) -> ServiceSpec:
    servicer = VoxtralServicer(settings)

    async def warm_up() -> None:
        await asyncio.to_thread(servicer.load)

    async def close() -> None:
        servicer.pool.close()

    return ServiceSpec(
        SERVICE_NAME, lambda server: voxtral_pb2_grpc.add_VoxtralServiceServicer_to_server(servicer, server),
        warm_up, close, servicer,
    )
