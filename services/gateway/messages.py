"""The gateway's proto messages and the engine's typed inputs and events, each way. The gRPC
servicer and the WebSocket bridge (whose JSON is the proto's) both translate here."""

from __future__ import annotations

from collections.abc import Iterable

from services.common.latency import by_name
from services.gateway.engine import events as ev
from services.gateway.engine.inputs import (
    Audio,
    ControlInput,
    Declared,
    Input,
    PlaybackReport,
    SessionRequest,
    ToolResult,
    Unreadable,
    Update,
    UserText,
)
from services.gateway.engine.vocabulary import Control, Detector
from voice.v1 import gateway_pb2, vad_pb2, voxtral_pb2

DETECTORS = {vad_pb2.END_OF_TURN_DETECTOR_SILENCE: Detector.SILENCE,
             vad_pb2.END_OF_TURN_DETECTOR_SMART_TURN: Detector.SMART_TURN}
CONTROLS = {
    gateway_pb2.CONTROL_ACTION_INTERRUPT: Control.INTERRUPT,
    gateway_pb2.CONTROL_ACTION_RESET_CONTEXT: Control.RESET_CONTEXT,
    gateway_pb2.CONTROL_ACTION_END_OF_INPUT: Control.END_OF_INPUT,
}


def session_request(config: gateway_pb2.SessionConfig) -> SessionRequest:
    return SessionRequest(
        input_rate_hz=config.input_sample_rate_hz,
        output_rate_hz=config.output_sample_rate_hz or None,
        voice=config.voice,
        speed=config.speed if config.HasField("speed") else None,
        end_silence_ms=config.end_silence_ms if config.HasField("end_silence_ms") else None,
        instructions=config.instructions,
        resume_id=config.session_id,
        end_of_turn_fallback_ms=config.end_of_turn_fallback_ms if config.HasField("end_of_turn_fallback_ms")
        else None,
        end_of_turn_detector=DETECTORS.get(config.end_of_turn_detector),
        tools=declared(config.tools),
    )


def declared(tools: Iterable[voxtral_pb2.Tool]) -> tuple[Declared, ...]:
    return tuple((t.name, t.description, t.parameters_json) for t in tools)


def update(message: gateway_pb2.SessionUpdate) -> Update:
    return Update(voice=message.voice if message.HasField("voice") else None,
                  speed=message.speed if message.HasField("speed") else None,
                  instructions=message.instructions if message.HasField("instructions") else None,
                  tools=declared(message.tools) if message.replace_tools else None)


def to_input(request: gateway_pb2.ConverseRequest) -> Input:
    kind = request.WhichOneof("payload")
    if kind == "audio":
        return Audio(request.audio)
    if kind == "config":
        return session_request(request.config)
    if kind == "control":
        action = CONTROLS.get(request.control)
        if action is None:
            return Unreadable(f"unknown control action {request.control}: use INTERRUPT, RESET_CONTEXT or "
                              "END_OF_INPUT")
        return ControlInput(action)
    if kind == "playback":
        return PlaybackReport(request.playback.turn_id, request.playback.played_ms)
    if kind == "text":
        return UserText(request.text)
    if kind == "tool_result":
        return ToolResult(request.tool_result.call_id, request.tool_result.output)
    if kind == "update":
        return update(request.update)
    return Unreadable("empty request: set audio, text, control, playback, tool_result or update")


def to_message(event: ev.Event) -> gateway_pb2.ConverseResponse:
    match event:
        case ev.SessionStarted():
            return gateway_pb2.ConverseResponse(session_started=gateway_pb2.SessionStarted(
                session_id=event.session_id, resumed=event.resumed, context_exchanges=event.context_exchanges))
        case ev.SpeechStarted():
            return gateway_pb2.ConverseResponse(speech_started=gateway_pb2.SpeechStarted(
                turn_id=event.turn_id, start_sample=event.start_sample))
        case ev.SpeechEnded():
            return gateway_pb2.ConverseResponse(speech_ended=gateway_pb2.SpeechEnded(
                turn_id=event.turn_id, start_sample=event.start_sample, end_sample=event.end_sample,
                end_of_turn_probability=event.end_of_turn_probability))
        case ev.ResponseText():
            return gateway_pb2.ConverseResponse(response_text=gateway_pb2.ResponseText(
                turn_id=event.turn_id, delta=event.delta))
        case ev.ResponseAudio():
            return gateway_pb2.ConverseResponse(response_audio=gateway_pb2.ResponseAudio(
                turn_id=event.turn_id, audio=event.pcm, sample_rate_hz=event.sample_rate_hz, text=event.text,
                offset_ms=event.offset_ms))
        case ev.TurnCompleted():
            return gateway_pb2.ConverseResponse(turn_completed=gateway_pb2.TurnCompleted(
                turn_id=event.turn_id, user_text=event.user_text, heard_text=event.heard_text,
                assistant_text=event.heard_text,  # deprecated name, filled for one release
                metrics=gateway_pb2.TurnMetrics(**by_name(event.metrics)), speculative=event.speculative))
        case ev.Interrupted():
            return gateway_pb2.ConverseResponse(interrupted=gateway_pb2.Interrupted(
                turn_id=event.turn_id, heard_text=event.heard_text, heard_ms=event.heard_ms,
                spoken_text=event.heard_text))  # deprecated name, filled for one release
        case ev.ReplyPaused():
            return gateway_pb2.ConverseResponse(reply_paused=gateway_pb2.ReplyPaused(
                turn_id=event.turn_id, heard_ms=event.heard_ms))
        case ev.ReplyResumed():
            return gateway_pb2.ConverseResponse(reply_resumed=gateway_pb2.ReplyResumed(
                turn_id=event.turn_id, heard_ms=event.heard_ms, dismissed_turn_id=event.dismissed_turn_id))
        case ev.TextTurn():
            return gateway_pb2.ConverseResponse(text_turn=gateway_pb2.TextTurn(turn_id=event.turn_id, text=event.text))
        case ev.TurnEnded():
            return gateway_pb2.ConverseResponse(turn_ended=gateway_pb2.TurnEnded(
                turn_id=event.turn_id, outcome=gateway_pb2.TurnOutcome.Value(event.outcome.wire),
                user_text=event.user_text, user_text_known=event.user_text_known, heard_text=event.heard_text,
                cut_off=event.cut_off, reason=event.reason, metrics=gateway_pb2.TurnMetrics(**by_name(event.metrics))))
        case ev.ToolCalled():
            return gateway_pb2.ConverseResponse(tool_called=gateway_pb2.ToolCalled(
                turn_id=event.turn_id, calls=[voxtral_pb2.ToolCall(id=c.call_id, name=c.name,
                                                                   arguments_json=c.arguments_json())
                                              for c in event.calls]))
        case ev.ErrorEvent():
            return gateway_pb2.ConverseResponse(error=gateway_pb2.Error(
                code=gateway_pb2.ErrorCode.Value(event.code.wire), message=event.message,
                session_continues=event.session_continues, turn_id=event.turn_id))
    raise TypeError(f"no message for {event!r}")
