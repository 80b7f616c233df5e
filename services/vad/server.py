"""VadService gRPC surface: translates messages and runs the end-of-turn model off the event loop;
the logic is in endpointer.py."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import numpy as np

from services.common.audio import check_mono_pcm16
from services.common.errors import InvalidArgument, ResourceExhausted
from services.common.server import ServiceSpec
from services.vad import models
from services.vad.config import VadSettings
from services.vad.endpointer import Ask, Endpointer, EndpointerConfig, EventKind, SpeechEvent
from services.vad.smart_turn import DecisionPool, SmartTurn
from services.vad.tracing import UtteranceTrace
from services.vad.turn_policy import FALLBACK_MS, Detector, EndReason, TurnPolicy
from services.vad.voice import Backend, SileroModel
from voice.v1 import audio_pb2, vad_pb2, vad_pb2_grpc

SERVICE_NAME = vad_pb2.DESCRIPTOR.services_by_name["VadService"].full_name
EVENT_TYPES = {
    EventKind.STARTED: vad_pb2.SPEECH_EVENT_TYPE_STARTED,
    EventKind.PAUSED: vad_pb2.SPEECH_EVENT_TYPE_PAUSED,
    EventKind.RESUMED: vad_pb2.SPEECH_EVENT_TYPE_RESUMED,
    EventKind.ENDED: vad_pb2.SPEECH_EVENT_TYPE_ENDED,
}
DETECTORS = {Detector.SILENCE: vad_pb2.END_OF_TURN_DETECTOR_SILENCE,
             Detector.SMART_TURN: vad_pb2.END_OF_TURN_DETECTOR_SMART_TURN}
BACKENDS = {Backend.WEBRTC: vad_pb2.VOICE_BACKEND_WEBRTC, Backend.SILERO: vad_pb2.VOICE_BACKEND_SILERO}
REASONS = {EndReason.SILENCE: vad_pb2.END_OF_TURN_REASON_SILENCE, EndReason.MODEL: vad_pb2.END_OF_TURN_REASON_MODEL,
           EndReason.FALLBACK: vad_pb2.END_OF_TURN_REASON_FALLBACK,
           EndReason.INPUT_END: vad_pb2.END_OF_TURN_REASON_INPUT_END}


def _enum_field(config: vad_pb2.VadConfig, name: str, table: Mapping[Any, Any], default: Any) -> Any:
    if not config.HasField(name):  # type: ignore[arg-type]  # name is one of the optional enum fields
        return default
    value = getattr(config, name)
    for member, wire in table.items():
        if wire == value:
            return member
    choices = ", ".join(vad_pb2.DESCRIPTOR.enum_types_by_name[table_name(name)].values_by_number[w].name
                        for w in table.values())
    raise InvalidArgument(f"config.{name}={value} is not supported: use one of {choices}")


def table_name(field: str) -> str:
    return {"detector": "EndOfTurnDetector", "backend": "VoiceBackend"}[field]


def _policy(config: vad_pb2.VadConfig, defaults: VadSettings) -> TurnPolicy:
    """The service's turn policy, with this stream's fallback when it names one."""
    policy = defaults.policy()
    if not config.HasField("end_of_turn_fallback_ms"):
        return policy
    fallback = FALLBACK_MS.check("config.end_of_turn_fallback_ms", config.end_of_turn_fallback_ms)
    return dataclasses.replace(policy, fallback_ms=fallback, clean_fallback_ms=min(policy.clean_fallback_ms, fallback))


def endpointer_config(config: vad_pb2.VadConfig, defaults: VadSettings) -> EndpointerConfig:
    if not config.HasField("format") or config.format.sample_rate_hz == 0:
        raise InvalidArgument("config.format.sample_rate_hz is required: an integer from 8000 to 48000 Hz")
    encoding = config.format.encoding  # an open enum: a newer client may send a number we do not know
    name = audio_pb2.AudioEncoding.Name(encoding) if encoding in audio_pb2.AudioEncoding.values() else str(encoding)
    check_mono_pcm16(name, config.format.channels)

    def pick(name: str) -> int:
        has = config.HasField(name)  # type: ignore[arg-type]  # the names below are the config's optional fields
        return int(getattr(config, name) if has else getattr(defaults, name))

    return EndpointerConfig(
        sample_rate_hz=config.format.sample_rate_hz,
        aggressiveness=pick("aggressiveness"),
        frame_ms=pick("frame_ms"),
        min_speech_ms=pick("min_speech_ms"),
        end_silence_ms=pick("end_silence_ms"),
        pause_ms=pick("pause_ms"),
        pre_roll_ms=pick("pre_roll_ms"),
        detector=_enum_field(config, "detector", DETECTORS, defaults.detector),
        backend=_enum_field(config, "backend", BACKENDS, defaults.backend),
        silero_threshold=defaults.silero_threshold,
        snr_db=defaults.snr_db,
        floor_window_ms=defaults.floor_window_ms,
        policy=_policy(config, defaults),
        hint_at_ask=defaults.hint_at_ask,
    )


def to_message(event: SpeechEvent) -> vad_pb2.StreamDetectResponse:
    message = vad_pb2.SpeechEvent(
        type=EVENT_TYPES[event.kind], start_sample=event.start_sample,
        end_sample=event.end_sample, decided_at_sample=event.decided_at_sample, voiced_ms=round(event.voiced_ms),
    )
    if event.probability is not None:
        message.end_of_turn_probability = event.probability
    if event.reason is not None:
        message.end_reason = REASONS[event.reason]
    return vad_pb2.StreamDetectResponse(event=message)


class TurnModels:
    """The model files, checked and loaded once per process (a bad file stops the start)."""

    def __init__(self, settings: VadSettings) -> None:
        self.smart_turn_path = models.verified(settings.models_dir, models.SMART_TURN)
        self.silero_path = models.verified(settings.models_dir, models.SILERO)
        self.silero = SileroModel(self.silero_path)
        self.decisions = DecisionPool(SmartTurn(self.smart_turn_path), settings.decision_workers,
                                      settings.decision_queue)


class VadServicer(vad_pb2_grpc.VadServiceServicer):
    def __init__(self, settings: VadSettings, turn_models: TurnModels) -> None:
        self.settings = settings
        self.models = turn_models
        self.active_streams = 0

    async def StreamDetect(
        self, request_iterator: AsyncIterator[vad_pb2.StreamDetectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[vad_pb2.StreamDetectResponse]:
        if self.active_streams >= self.settings.max_streams:
            raise ResourceExhausted(f"VAD is serving its maximum of {self.settings.max_streams} streams; retry later")
        self.active_streams += 1
        # Audio is read on its own task (a plain `async for`: cheap per message); events from the
        # audio and from the model's answers meet in one queue that this generator drains.
        out: asyncio.Queue[SpeechEvent | BaseException | None] = asyncio.Queue()
        decisions: set[asyncio.Task[None]] = set()
        endpointer: Endpointer | None = None

        utterance = UtteranceTrace()

        async def decide(ask: Ask) -> None:
            with utterance.span("vad.end_of_turn_model") as span:
                probability, compute_ms = await self.models.decisions.probability(ask.audio)
                span.set_attributes({"compute_ms": round(compute_ms, 2), "probability": probability or -1.0})
            if endpointer is not None:
                for event in endpointer.answer(ask, probability):
                    utterance.saw(event)
                    out.put_nowait(event)

        def handle(items: list[SpeechEvent | Ask]) -> None:
            for item in items:
                if isinstance(item, Ask):
                    task = asyncio.create_task(decide(item))
                    decisions.add(task)
                    task.add_done_callback(decisions.discard)
                else:
                    utterance.saw(item)
                    out.put_nowait(item)

        async def read() -> None:
            nonlocal endpointer
            try:
                async for request in request_iterator:
                    kind = request.WhichOneof("payload")
                    if kind == "config":
                        if endpointer is not None:
                            raise InvalidArgument("config was already sent: send it once, as the first message")
                        endpointer = Endpointer(endpointer_config(request.config, self.settings), self.models.silero)
                    elif kind == "audio":
                        if endpointer is None:
                            raise InvalidArgument("the first message must be config (sample rate etc.), not audio")
                        handle(endpointer.push(request.audio))
                    elif kind == "trace":
                        utterance.follow(dict(request.trace.carrier))
                    else:
                        raise InvalidArgument("empty request: set config or audio")
                if endpointer is not None:
                    handle(list(endpointer.finish()))
                out.put_nowait(None)
            except Exception as err:  # noqa: BLE001  # handed to the generator, which raises it for the interceptor
                out.put_nowait(err)

        reader = asyncio.create_task(read())
        try:
            while (item := await out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield to_message(item)
        finally:
            self.active_streams -= 1
            for task in (reader, *decisions):
                task.cancel()
            await asyncio.gather(reader, *decisions, return_exceptions=True)

    async def GetInfo(self, request: vad_pb2.VadServiceGetInfoRequest, context: grpc.aio.ServicerContext):
        s = self.settings
        policy = s.policy()
        return vad_pb2.VadServiceGetInfoResponse(
            defaults=vad_pb2.VadConfig(aggressiveness=s.aggressiveness, frame_ms=s.frame_ms,
                                       min_speech_ms=s.min_speech_ms, end_silence_ms=s.end_silence_ms,
                                       pause_ms=s.pause_ms, pre_roll_ms=s.pre_roll_ms,
                                       detector=DETECTORS[s.detector], backend=BACKENDS[s.backend]),
            max_streams=s.max_streams, active_streams=self.active_streams,
            end_of_turn=vad_pb2.EndOfTurnInfo(
                detector=DETECTORS[s.detector], backend=BACKENDS[s.backend],
                smart_turn_model=models.SMART_TURN.name, smart_turn_sha256=models.SMART_TURN.sha256,
                silero_model=models.SILERO.name, silero_sha256=models.SILERO.sha256,
                ask_after_ms=policy.ask_after_ms, ask_every_ms=policy.ask_every_ms, ask_until_ms=policy.ask_until_ms,
                threshold_start=policy.threshold_start, threshold_end=policy.threshold_end,
                fallback_ms=policy.fallback_ms, clean_fallback_ms=policy.clean_fallback_ms,
                snr_db=s.snr_db, floor_window_ms=s.floor_window_ms, decision_workers=s.decision_workers,
            ),
        )


def vad_service(settings: VadSettings) -> ServiceSpec:
    turn_models = TurnModels(settings)  # before serving: a missing or wrong file stops the start, naming `make models`
    servicer = VadServicer(settings, turn_models)

    async def warm_up() -> None:
        # One frame through each detector and one decision, so a broken module fails the start, not a call.
        Endpointer(EndpointerConfig(sample_rate_hz=16000)).push(bytes(960))
        Endpointer(EndpointerConfig(sample_rate_hz=16000, backend=Backend.SILERO), turn_models.silero).push(bytes(1024))
        probability, _ = await turn_models.decisions.probability(np.zeros(16000, np.float32))
        if probability is None:
            raise RuntimeError("the Smart Turn pool refused its warm-up decision")

    async def close() -> None:
        turn_models.decisions.close()

    return ServiceSpec(
        SERVICE_NAME, lambda server: vad_pb2_grpc.add_VadServiceServicer_to_server(servicer, server), warm_up,
        close=close, servicer=servicer,
    )
