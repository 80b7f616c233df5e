"""VadService gRPC surface: translates messages; a stream's decision loop is in stream.py, the
logic in endpointer.py."""

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
from services.vad.endpointer import Endpointer, EndpointerConfig, EventKind, SpeechEvent
from services.vad.smart_turn import DecisionPool, SmartTurn
from services.vad.stream import DetectStream
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
        stream = DetectStream(self.models.decisions)

        async def read() -> None:  # the audio on its own task (a plain `async for`: cheap per message)
            try:
                async for request in request_iterator:
                    kind = request.WhichOneof("payload")
                    if kind == "config":
                        stream.start(Endpointer(endpointer_config(request.config, self.settings), self.models.silero))
                    elif kind == "audio":
                        stream.push(request.audio)
                    elif kind == "trace":
                        stream.utterance.follow(dict(request.trace.carrier))
                    else:
                        raise InvalidArgument("empty request: set config or audio")
                stream.finish()
            except Exception as err:  # noqa: BLE001  # handed to the generator, which raises it for the interceptor
                stream.fail(err)

        reader = asyncio.create_task(read())
        try:
            async for event in stream.events():
                yield to_message(event)
        finally:
            self.active_streams -= 1
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await stream.close()

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
