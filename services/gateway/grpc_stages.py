"""The engine's stages over gRPC: the Stages protocol implemented with the stage services' stubs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import numpy as np

from services.common.channels import open_channel
from services.common.clauses import speech_seconds
from services.common.limits import VOXTRAL_SAMPLE_RATE_HZ
from services.common.load import StageLoad
from services.common.load_message import stage_load_from_message
from services.common.stage_auth import channel_credentials, token_metadata
from services.common.tools import ToolCall, ToolSpec
from services.gateway.config import GatewaySettings
from services.gateway.engine.stages import HistoryTurn, ReplyDelta, SpeechChunk, StageError, VadEvent
from services.gateway.engine.vocabulary import Detector, Stage, VadEventKind
from services.gateway.metrics import GatewayMetrics
from voice.v1 import audio_pb2, tts_pb2, tts_pb2_grpc, vad_pb2, vad_pb2_grpc, voxtral_pb2, voxtral_pb2_grpc

VAD_KINDS = {
    vad_pb2.SPEECH_EVENT_TYPE_STARTED: VadEventKind.STARTED,
    vad_pb2.SPEECH_EVENT_TYPE_PAUSED: VadEventKind.PAUSED,
    vad_pb2.SPEECH_EVENT_TYPE_RESUMED: VadEventKind.RESUMED,
    vad_pb2.SPEECH_EVENT_TYPE_ENDED: VadEventKind.ENDED,
}


# A stage's deadline passes on either side (its own, or this call's): said one way, whichever it was.
DEADLINE_WORDING = "did not answer within its deadline"


def stage_error(stage: Stage, err: grpc.aio.AioRpcError, metrics: GatewayMetrics) -> StageError:
    code = err.code().name
    metrics.stage_errors.labels(stage=stage, code=code).inc()
    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return StageError(stage, code, DEADLINE_WORDING)
    return StageError(stage, code, err.details() or code)


ROLES = {"user": voxtral_pb2.ROLE_USER, "assistant": voxtral_pb2.ROLE_ASSISTANT, "tool": voxtral_pb2.ROLE_TOOL}


def conversation_turn(turn: HistoryTurn) -> voxtral_pb2.ConversationTurn:
    return voxtral_pb2.ConversationTurn(
        role=ROLES[turn.role], text=turn.text, tool_call_id=turn.tool_call_id,
        tool_calls=[voxtral_pb2.ToolCall(id=c.call_id, name=c.name, arguments_json=c.arguments_json())
                    for c in turn.tool_calls])


class GrpcVadStream:
    """One session's StreamDetect call."""

    def __init__(self, call: grpc.aio.StreamStreamCall, metrics: GatewayMetrics) -> None:
        self.call = call
        self.metrics = metrics

    async def send(self, pcm: bytes) -> None:
        await self.send_request(vad_pb2.StreamDetectRequest(audio=pcm))

    async def send_request(self, request: vad_pb2.StreamDetectRequest) -> None:
        try:
            await self.call.write(request)
        except grpc.aio.AioRpcError as err:
            raise stage_error(Stage.VAD, err, self.metrics) from None
        except asyncio.InvalidStateError:
            raise StageError(Stage.VAD, "UNAVAILABLE", "the VAD stream has ended") from None

    async def trace(self, carrier: dict[str, str]) -> None:
        await self.send_request(vad_pb2.StreamDetectRequest(trace=vad_pb2.TraceContext(carrier=carrier)))

    async def finish(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self.call.done_writing()

    async def events(self) -> AsyncIterator[VadEvent]:
        try:
            async for reply in self.call:
                event = reply.event
                kind = VAD_KINDS.get(event.type)
                if kind is not None:  # a kind this gateway does not know yet is not acted on
                    probability = event.end_of_turn_probability if event.HasField("end_of_turn_probability") \
                        else None
                    yield VadEvent(kind, event.start_sample, event.end_sample, probability, event.voiced_ms)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                raise stage_error(Stage.VAD, err, self.metrics) from None

    def cancel(self) -> None:
        self.call.cancel()


class GrpcStages:
    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()  # the process's, from the composition root
        size = settings.max_message_bytes * 2
        secure: dict[str, Any] = {
            "credentials": channel_credentials(settings.stage_tls_ca_file, settings.stage_tls_cert_file,
                                               settings.stage_tls_key_file),
            "server_name": settings.stage_tls_server_name,
            "unary_timeout_s": settings.unary_timeout_s,
        }
        self._vad_channel = open_channel(settings.vad_target, vad_pb2.DESCRIPTOR.services_by_name["VadService"],
                                         max_message_bytes=size, **secure)
        self._voxtral_channel = open_channel(
            settings.voxtral_target, voxtral_pb2.DESCRIPTOR.services_by_name["VoxtralService"],
            max_message_bytes=8 * 1024 * 1024, method_timeouts={"Transcribe": settings.transcribe_timeout_s},
            **secure)
        self._tts_channel = open_channel(settings.tts_target, tts_pb2.DESCRIPTOR.services_by_name["TtsService"],
                                         max_message_bytes=8 * 1024 * 1024, **secure)
        self.vad = vad_pb2_grpc.VadServiceStub(self._vad_channel)
        self.voxtral = voxtral_pb2_grpc.VoxtralServiceStub(self._voxtral_channel)
        self.tts = tts_pb2_grpc.TtsServiceStub(self._tts_channel)
        self._voices: set[str] = set()
        # Every stage call carries the shared token, when there is one.
        self.meta = token_metadata(settings.stage_token.get_secret_value() if settings.stage_token else None)

    def connect(self) -> None:
        """Start connecting every channel that is idle (gRPC connects lazily), so a session's first
        turn does not pay for a connection; a stage that is down is simply retried later."""
        for channel in (self._vad_channel, self._voxtral_channel, self._tts_channel):
            channel.get_state(try_to_connect=True)

    async def open_vad(self, sample_rate_hz: int, end_silence_ms: int, fallback_ms: int | None = None,
                       detector: Detector | None = None) -> GrpcVadStream:
        call = self.vad.StreamDetect(metadata=self.meta)
        config = vad_pb2.VadConfig(format=audio_pb2.AudioFormat(
            sample_rate_hz=sample_rate_hz, encoding=audio_pb2.AUDIO_ENCODING_PCM16LE, channels=1),
            end_silence_ms=end_silence_ms, end_of_turn_fallback_ms=fallback_ms,
            detector=vad_pb2.EndOfTurnDetector.Value(f"END_OF_TURN_DETECTOR_{detector.name}") if detector else None)
        try:
            async with asyncio.timeout(self.settings.vad_timeout_s):
                await call.write(vad_pb2.StreamDetectRequest(config=config))
        except TimeoutError:
            call.cancel()
            raise StageError(Stage.VAD, "DEADLINE_EXCEEDED", "the VAD did not accept a stream in time") from None
        except grpc.aio.AioRpcError as err:
            raise stage_error(Stage.VAD, err, self.metrics) from None
        except asyncio.InvalidStateError:
            status = await call.code()
            raise StageError(Stage.VAD, status.name, await call.details() or "the VAD refused the stream") from None
        return GrpcVadStream(call, self.metrics)

    async def respond(self, pcm16k: np.ndarray | None, history: Sequence[HistoryTurn], instructions: str,
                      session_id: str, turn_id: str, speculative: bool = False, text: str = "",
                      tools: Sequence[ToolSpec] = (),
                      after: Sequence[HistoryTurn] = ()) -> AsyncIterator[ReplyDelta]:
        request = voxtral_pb2.RespondRequest(
            audio=b"" if pcm16k is None else pcm16k.tobytes(), sample_rate_hz=VOXTRAL_SAMPLE_RATE_HZ,
            text=text, instructions=instructions, session_id=session_id, turn_id=turn_id, speculative=speculative,
            history=[conversation_turn(t) for t in history], after=[conversation_turn(t) for t in after],
            tools=[voxtral_pb2.Tool(name=t.name, description=t.description, parameters_json=t.as_json())
                   for t in tools])
        call = self.voxtral.Respond(request, timeout=self.settings.voxtral_timeout_s, metadata=self.meta)
        try:
            async for reply in call:
                if reply.text_delta:
                    yield ReplyDelta(reply.text_delta, reply.elapsed_ms)
                if reply.tool_calls or reply.tool_call_error:
                    yield ReplyDelta("", reply.elapsed_ms, tuple(ToolCall(
                        c.id, c.name, json.loads(c.arguments_json)) for c in reply.tool_calls), reply.tool_call_error)
        except grpc.aio.AioRpcError as err:
            raise stage_error(Stage.VOXTRAL, err, self.metrics) from None
        finally:
            call.cancel()  # a turn that stops early frees Voxtral's slot at once

    async def synthesize(self, text: str, voice: str, speed: float | None, sample_rate_hz: int,
                         session_id: str, turn_id: str, more_follows: bool = False,
                         need_in_ms: int = 0) -> AsyncIterator[SpeechChunk]:
        request = tts_pb2.SynthesizeRequest(text=text, voice=voice, sample_rate_hz=sample_rate_hz,
                                            session_id=session_id, turn_id=turn_id, more_follows=more_follows,
                                            need_in_ms=need_in_ms)
        if speed is not None:
            request.speed = speed
        # The budget counts from when the clause is needed, not from now, and its later pieces are
        # needed as the earlier ones are heard.
        timeout = need_in_ms / 1000 + speech_seconds(text, speed or 1.0) + self.settings.tts_timeout_s
        call = self.tts.Synthesize(request, timeout=timeout, metadata=self.meta)
        try:
            async for reply in call:
                yield SpeechChunk(reply.audio, reply.text, reply.compute_ms)
        except grpc.aio.AioRpcError as err:
            raise stage_error(Stage.TTS, err, self.metrics) from None
        finally:
            call.cancel()

    async def transcribe(self, pcm16k: np.ndarray, session_id: str, turn_id: str) -> str:
        try:
            reply = await self.voxtral.Transcribe(voxtral_pb2.TranscribeRequest(
                audio=pcm16k.tobytes(), sample_rate_hz=VOXTRAL_SAMPLE_RATE_HZ, session_id=session_id,
                turn_id=turn_id), metadata=self.meta)  # its deadline is the channel's: transcribe_timeout_s
        except grpc.aio.AioRpcError as err:
            raise stage_error(Stage.VOXTRAL, err, self.metrics) from None
        return reply.text

    async def voices(self) -> set[str]:
        """Voice names the TTS offers (asked once, then remembered)."""
        if not self._voices:
            try:
                reply = await self.tts.ListVoices(tts_pb2.ListVoicesRequest(), metadata=self.meta)
            except grpc.aio.AioRpcError as err:
                raise stage_error(Stage.TTS, err, self.metrics) from None
            self._voices = {v.name for v in reply.voices}
        return self._voices

    async def load(self, stage: Stage) -> StageLoad:
        try:
            if stage is Stage.TTS:
                reply = (await self.tts.GetLoad(tts_pb2.TtsServiceGetLoadRequest(),
                                                timeout=self.settings.unary_timeout_s, metadata=self.meta)).load
            else:
                reply = (await self.voxtral.GetLoad(voxtral_pb2.VoxtralServiceGetLoadRequest(),
                                                    timeout=self.settings.unary_timeout_s, metadata=self.meta)).load
        except grpc.aio.AioRpcError as err:
            raise stage_error(stage, err, self.metrics) from None
        return stage_load_from_message(reply)

    async def close(self) -> None:
        for channel in (self._vad_channel, self._voxtral_channel, self._tts_channel):
            await channel.close()
