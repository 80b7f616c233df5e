"""VadService gRPC surface: translates messages; the logic is in endpointer.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from services.common.audio import check_mono_pcm16
from services.common.errors import InvalidArgument, ResourceExhausted
from services.common.server import ServiceSpec
from services.vad.config import VadSettings
from services.vad.endpointer import Endpointer, EndpointerConfig, EventKind, SpeechEvent
from voice.v1 import audio_pb2, vad_pb2, vad_pb2_grpc

SERVICE_NAME = vad_pb2.DESCRIPTOR.services_by_name["VadService"].full_name
EVENT_TYPES = {
    EventKind.STARTED: vad_pb2.SPEECH_EVENT_TYPE_STARTED,
    EventKind.PAUSED: vad_pb2.SPEECH_EVENT_TYPE_PAUSED,
    EventKind.RESUMED: vad_pb2.SPEECH_EVENT_TYPE_RESUMED,
    EventKind.ENDED: vad_pb2.SPEECH_EVENT_TYPE_ENDED,
}


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
    )


def to_message(event: SpeechEvent) -> vad_pb2.StreamDetectResponse:
    return vad_pb2.StreamDetectResponse(event=vad_pb2.SpeechEvent(
        type=EVENT_TYPES[event.kind], start_sample=event.start_sample,
        end_sample=event.end_sample, decided_at_sample=event.decided_at_sample,
    ))


class VadServicer(vad_pb2_grpc.VadServiceServicer):
    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self.active_streams = 0

    async def StreamDetect(
        self, request_iterator: AsyncIterator[vad_pb2.StreamDetectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[vad_pb2.StreamDetectResponse]:
        if self.active_streams >= self.settings.max_streams:
            raise ResourceExhausted(f"VAD is serving its maximum of {self.settings.max_streams} streams; retry later")
        self.active_streams += 1
        try:
            endpointer: Endpointer | None = None
            async for request in request_iterator:
                kind = request.WhichOneof("payload")
                if kind == "config":
                    if endpointer is not None:
                        raise InvalidArgument("config was already sent: send it once, as the first message")
                    endpointer = Endpointer(endpointer_config(request.config, self.settings))
                elif kind == "audio":
                    if endpointer is None:
                        raise InvalidArgument("the first message must be config (sample rate etc.), not audio")
                    for event in endpointer.push(request.audio):
                        yield to_message(event)
                else:
                    raise InvalidArgument("empty request: set config or audio")
            if endpointer is not None:
                for event in endpointer.finish():
                    yield to_message(event)
        finally:
            self.active_streams -= 1


    async def GetInfo(self, request: vad_pb2.VadServiceGetInfoRequest, context: grpc.aio.ServicerContext):
        s = self.settings
        return vad_pb2.VadServiceGetInfoResponse(
            defaults=vad_pb2.VadConfig(aggressiveness=s.aggressiveness, frame_ms=s.frame_ms,
                                       min_speech_ms=s.min_speech_ms, end_silence_ms=s.end_silence_ms,
                                       pause_ms=s.pause_ms, pre_roll_ms=s.pre_roll_ms),
            max_streams=s.max_streams, active_streams=self.active_streams,
        )


def vad_service(settings: VadSettings) -> ServiceSpec:
    servicer = VadServicer(settings)

    async def warm_up() -> None:
        # One frame through webrtcvad, so a broken native module fails the start, not a call.
        Endpointer(EndpointerConfig(sample_rate_hz=16000)).push(bytes(960))

    return ServiceSpec(
        SERVICE_NAME, lambda server: vad_pb2_grpc.add_VadServiceServicer_to_server(servicer, server), warm_up,
        servicer=servicer,
    )
