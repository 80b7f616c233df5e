"""VoxtralService gRPC surface: checks and translates messages; the work is in responder.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np

from services.common.audio import pcm16_samples
from services.common.errors import InvalidArgument, echo
from services.common.limits import USER_TEXT_CHARS
from services.common.load_message import stage_load_message
from services.common.logs import bound
from services.common.ready import Ready
from services.common.server import ServiceSpec
from services.common.tools import CALL_ID, ToolCall, check_call, check_tools
from services.voxtral.config import VoxtralSettings
from services.voxtral.engine import VoxtralEngine
from services.voxtral.generation import GenerationParams
from services.voxtral.prompts import SAMPLE_RATE, Turn, check_language
from services.voxtral.responder import Delta, Responder
from voice.v1 import voxtral_pb2, voxtral_pb2_grpc

SERVICE_NAME = voxtral_pb2.DESCRIPTOR.services_by_name["VoxtralService"].full_name
ROLES = {voxtral_pb2.ROLE_USER: "user", voxtral_pb2.ROLE_ASSISTANT: "assistant", voxtral_pb2.ROLE_TOOL: "tool"}
FINISH = {"stop": voxtral_pb2.FINISH_REASON_STOP, "length": voxtral_pb2.FINISH_REASON_LENGTH,
          "cancelled": voxtral_pb2.FINISH_REASON_CANCELLED, "tool_calls": voxtral_pb2.FINISH_REASON_TOOL_CALLS}
OPTION_FIELDS = ("max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty")


def turn(message: voxtral_pb2.ConversationTurn, where: str) -> Turn:
    """A turn of the request, its calls' ids and arguments checked (mistral-common refuses others)."""
    calls = []
    for call in message.tool_calls:
        if not CALL_ID.match(call.id):
            raise InvalidArgument(f"{where}: tool call id {echo(call.id)} must be nine letters or digits")
        try:
            arguments = json.loads(call.arguments_json or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise InvalidArgument(f"{where}: the arguments of tool call {call.id} are not a JSON object")
        calls.append(ToolCall(call.id, call.name, arguments))
    if message.role == voxtral_pb2.ROLE_TOOL and not CALL_ID.match(message.tool_call_id):
        raise InvalidArgument(f"{where}: a tool turn names its call in tool_call_id (nine letters or digits)")
    return Turn(ROLES.get(message.role, ""), message.text, tuple(calls), message.tool_call_id)


class VoxtralServicer(voxtral_pb2_grpc.VoxtralServiceServicer):
    def __init__(self, settings: VoxtralSettings) -> None:
        self.settings = settings
        self.responder: Ready[Responder] = Ready("Voxtral")
        self.defaults = GenerationParams.defaults(settings)

    def load(self) -> None:
        engine = VoxtralEngine(self.settings)
        engine.warm_up()
        self.responder.set(Responder(self.settings, engine))

    def _audio(self, audio: bytes, rate: int) -> np.ndarray:
        if rate != SAMPLE_RATE:
            raise InvalidArgument(f"sample_rate_hz={rate} is not supported: send PCM16 mono at {SAMPLE_RATE} Hz")
        if not audio:
            raise InvalidArgument(f"audio is empty: send the utterance as PCM16 mono at {SAMPLE_RATE} Hz (or, to "
                                  "Respond, the user's words as text)")
        samples = pcm16_samples(audio)
        seconds = len(samples) / SAMPLE_RATE
        if seconds > self.settings.max_audio_s:
            raise InvalidArgument(f"audio lasts {seconds:.1f} s; the limit is {self.settings.max_audio_s:g} s")
        return samples

    def _said(self, request: voxtral_pb2.RespondRequest) -> tuple[np.ndarray | None, str]:
        """The user's turn: their audio, or their typed text (one of the two)."""
        if not request.text:
            return self._audio(request.audio, request.sample_rate_hz), ""
        if request.audio:
            raise InvalidArgument("send the user's turn as audio or as text, not both")
        USER_TEXT_CHARS.check("text length", len(request.text))
        return None, request.text

    def _params(self, options: voxtral_pb2.GenerationOptions) -> GenerationParams:
        # OPTION_FIELDS are GenerationOptions' optional fields, which the stub types one literal at a time.
        changes = {name: getattr(options, name) for name in OPTION_FIELDS if options.HasField(name)}  # type: ignore[arg-type]  # see above
        return self.defaults.override(self.settings.max_new_tokens_limit, **changes)

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        return time.monotonic() + (self.settings.request_timeout_s if remaining is None else remaining)

    async def Respond(
        self, request: voxtral_pb2.RespondRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[voxtral_pb2.RespondResponse]:
        with bound(session_id=request.session_id or None, turn_id=request.turn_id or None):
            responder = self.responder.get()
            samples, text = self._said(request)
            params = self._params(request.generation)
            tools = check_tools([(t.name, t.description, t.parameters_json) for t in request.tools])
            history = [turn(t, "history") for t in request.history]
            after = [turn(t, "after") for t in request.after]
            if after and not tools:
                raise InvalidArgument("after holds tool calls, but no tools are declared")
            first = True
            async for item in responder.respond(samples, history, request.instructions or self.settings.instructions,
                                                params, self._deadline(context), request.speculative, text,
                                                tools, after):
                if isinstance(item, Delta):
                    message = voxtral_pb2.RespondResponse(text_delta=item.text, elapsed_ms=item.elapsed_ms)
                    if first:
                        message.ttft_ms = item.elapsed_ms
                        first = False
                    yield message
                    continue
                result = item.result
                error = result.tool_call_error or next(filter(None, (check_call(c, tools) for c in result.tool_calls)),
                                                       "")
                calls = [] if error else [voxtral_pb2.ToolCall(id=c.call_id, name=c.name,
                                                               arguments_json=c.arguments_json())
                                          for c in result.tool_calls]
                yield voxtral_pb2.RespondResponse(
                    elapsed_ms=item.elapsed_ms, tool_calls=calls, tool_call_error=error,
                    stats=voxtral_pb2.GenerationStats(
                    prompt_tokens=len(item.inputs.tokens), audio_tokens=item.inputs.audio_tokens,
                    completion_tokens=result.completion_tokens, queue_ms=item.queue_ms, prefill_ms=result.prefill_ms,
                        decode_ms=result.decode_ms, ttft_ms=item.ttft_ms,
                        finish_reason=FINISH[result.finish_reason]))

    async def Transcribe(self, request: voxtral_pb2.TranscribeRequest,
                         context: grpc.aio.ServicerContext) -> voxtral_pb2.TranscribeResponse:
        responder = self.responder.get()
        samples = self._audio(request.audio, request.sample_rate_hz)
        language = check_language(request.language or self.settings.transcribe_language)
        transcript = await responder.transcribe(samples, language, self._deadline(context))
        return voxtral_pb2.TranscribeResponse(text=transcript.text, language=language,
                                              compute_ms=transcript.compute_ms)

    async def GetInfo(self, request: voxtral_pb2.GetInfoRequest,
                      context: grpc.aio.ServicerContext) -> voxtral_pb2.GetInfoResponse:
        responder = self.responder.get()
        engine = responder.engine
        d = self.defaults
        return voxtral_pb2.GetInfoResponse(
            model_id=self.settings.model_id, dtype=engine.dtype, device=engine.device,
            compile_mode=engine.compile_mode, kv_cache=engine.kv_cache, attention=self.settings.attention,
            model_note=engine.note,
            generation_slots=self.settings.slots, queue_size=self.settings.max_queue,
            generation_defaults=voxtral_pb2.GenerationOptions(
                max_new_tokens=d.max_new_tokens, min_new_tokens=d.min_new_tokens, temperature=d.temperature,
                top_p=d.top_p, top_k=d.top_k, repetition_penalty=d.repetition_penalty),
            load=stage_load_message(responder.pool.load()),
        )

    async def GetLoad(self, request: voxtral_pb2.VoxtralServiceGetLoadRequest,
                      context: grpc.aio.ServicerContext) -> voxtral_pb2.VoxtralServiceGetLoadResponse:
        return voxtral_pb2.VoxtralServiceGetLoadResponse(load=stage_load_message(self.responder.get().pool.load()))


def voxtral_service(settings: VoxtralSettings) -> ServiceSpec:
    servicer = VoxtralServicer(settings)

    async def warm_up() -> None:
        await asyncio.to_thread(servicer.load)

    async def close() -> None:
        if servicer.responder.value is not None:
            servicer.responder.value.close()

    return ServiceSpec(
        SERVICE_NAME, lambda server: voxtral_pb2_grpc.add_VoxtralServiceServicer_to_server(servicer, server),
        warm_up, close, servicer,
    )
