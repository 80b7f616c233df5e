"""A Realtime session's settings: `session.update` (GA shape, and the beta's flat fields) checked
field by field; what cannot be honoured is an error naming the field."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from services.common.errors import InvalidArgument
from services.common.limits import END_SILENCE_MS, SPEED
from services.common.tools import check_tools
from services.gateway.client_secrets import DEFAULT_TTL_S, MAX_TTL_S, MIN_TTL_S
from services.gateway.engine.inputs import Declared, SessionRequest
from services.gateway.engine.vocabulary import BargeInMode, Detector
from services.gateway.realtime.formats import PCM, AudioFormat, ClientError, audio_format

# semantic_vad's eagerness: how long the detector may wait for more when the model hears "not done".
EAGERNESS_FALLBACK_MS = {"low": 8000, "medium": 4000, "high": 2000, "auto": 4000}
# The longest model name taken (it is echoed in every session.updated).
MODEL_CHARS = 128
# Accepted and not applied: the VAD's noise floor gate already follows the room (docs/api.md).
NOISE_REDUCTION = ("near_field", "far_field")
# Not GA: turn_detection.pause_on_speech (true) keeps this gateway's reversible barge-in (the reply
# pauses, resumes after a cough or "mm", is cancelled for a turn) instead of GA's cancel at speech start.
PAUSE_EXTENSION = "pause_on_speech"
IGNORED = {"tracing", "include", "temperature", "truncation", "input_audio_transcription", "client_secret"}


@dataclass(frozen=True)
class TurnDetection:
    type: str  # server_vad or semantic_vad
    silence_duration_ms: int | None = None
    eagerness: str = "auto"
    create_response: bool = True
    interrupt_response: bool = True
    extra: tuple[tuple[str, Any], ...] = ()  # accepted and reported back (threshold, prefix_padding_ms)

    @property
    def barge_in(self) -> BargeInMode:
        if not self.interrupt_response:
            return BargeInMode.OFF
        return BargeInMode.PAUSE if dict(self.extra).get(PAUSE_EXTENSION) else BargeInMode.CANCEL

    def describe(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "create_response": self.create_response,
                                "interrupt_response": self.interrupt_response, **dict(self.extra)}
        if self.type == "server_vad":
            body["silence_duration_ms"] = self.silence_duration_ms
        else:
            body["eagerness"] = self.eagerness
        return body


@dataclass(frozen=True)
class RealtimeConfig:
    model: str = "voxtral"
    instructions: str = ""
    voice: str = ""
    speed: float | None = None
    input_format: AudioFormat = PCM
    output_format: AudioFormat = PCM
    turn_detection: TurnDetection | None = TurnDetection("server_vad")
    tools: tuple[Declared, ...] = ()  # (name, description, parameters as JSON), checked
    tool_choice: str = "auto"  # or none: the tools are not offered to the model

    @property
    def offered(self) -> tuple[Declared, ...]:
        """The tools the model may call now."""
        return self.tools if self.tool_choice == "auto" else ()

    def request(self, resume_id: str) -> SessionRequest:
        """The engine session this config asks for (resuming `resume_id` when it is set)."""
        td = self.turn_detection
        fallback = EAGERNESS_FALLBACK_MS[td.eagerness] if td is not None and td.type == "semantic_vad" else None
        # server_vad with a silence_duration_ms asks for turns that end on that silence: the fixed-silence
        # detector; without one, the VAD's default (the Smart Turn model) decides.
        silence = td is not None and td.type == "server_vad" and td.silence_duration_ms is not None
        return SessionRequest(self.input_format.rate_hz, self.output_format.rate_hz, self.voice, self.speed,
                              td.silence_duration_ms if td is not None else None, self.instructions, resume_id,
                              manual_turns=td is None, end_of_turn_fallback_ms=fallback,
                              end_of_turn_detector=Detector.SILENCE if silence else None,
                              barge_in=td.barge_in if td is not None else None, tools=self.offered)

    def engine_shape(self) -> tuple[Any, ...]:
        """What the engine session is started with: changing it starts the session again (resumed)."""
        return self.input_format, self.output_format, self.turn_detection

    def describe(self, session_id: str) -> dict[str, Any]:
        return {
            "id": session_id, "object": "realtime.session", "type": "realtime", "model": self.model,
            "instructions": self.instructions, "output_modalities": ["audio"],
            "tools": [{"type": "function", "name": name, "description": description,
                       "parameters": json.loads(parameters)} for name, description, parameters in self.tools],
            "tool_choice": self.tool_choice,
            "audio": {
                "input": {"format": self.input_format.describe(),
                          "turn_detection": self.turn_detection.describe() if self.turn_detection else None,
                          "transcription": {"model": "voxtral"}, "noise_reduction": None},
                "output": {"format": self.output_format.describe(), "voice": self.voice or "default",
                           "speed": self.speed if self.speed is not None else 1.0},
            },
        }


def secret_request(body: Any) -> tuple[int, RealtimeConfig]:
    """A client secret's lifetime and session, from `POST /v1/realtime/client_secrets`'s body: the
    session is checked as session.update checks it and echoed; the client sends it at connect."""
    if not isinstance(body, dict):
        raise ClientError("the body must be a JSON object", None)
    after = body.get("expires_after") or {}
    if not isinstance(after, dict):
        raise ClientError("expires_after must be an object", "expires_after")
    if after.get("anchor", "created_at") != "created_at":
        raise ClientError("expires_after.anchor must be created_at", "expires_after.anchor")
    seconds = after.get("seconds", DEFAULT_TTL_S)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not MIN_TTL_S <= seconds <= MAX_TTL_S:
        raise ClientError(f"expires_after.seconds must be a whole number from {MIN_TTL_S} to {MAX_TTL_S}",
                          "expires_after.seconds")
    session = body.get("session")
    return seconds, apply(RealtimeConfig(), session) if session is not None else RealtimeConfig()


def check_model(value: Any, param: str) -> str:
    """A model name as a client gives it: any short string (every name is served by Voxtral)."""
    if not isinstance(value, str) or not 0 < len(value) <= MODEL_CHARS:
        raise ClientError(f"{param} must be a model name of 1 to {MODEL_CHARS} characters", param)
    return value


def resolve_voice(name: str, voices: set[str]) -> str:
    """An OpenAI voice name ("alloy") as the TTS's voice of that name ("af_alloy"), when it has one."""
    if not name or not voices or name in voices:
        return name
    return next((v for v in sorted(voices) if v.split("_", 1)[-1] == name), name)


def _turn_detection(value: Any, param: str) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("server_vad", "semantic_vad"):
        raise ClientError(f"{param}.type must be server_vad or semantic_vad (or {param} null for manual commits)",
                          f"{param}.type")
    silence = value.get("silence_duration_ms")
    if silence is not None and (not isinstance(silence, int)
                                or not END_SILENCE_MS.low <= silence <= END_SILENCE_MS.high):
        raise ClientError(f"{param}.silence_duration_ms must be an integer from {END_SILENCE_MS.low} to "
                          f"{END_SILENCE_MS.high}", f"{param}.silence_duration_ms")
    eagerness = value.get("eagerness", "auto")
    if not isinstance(eagerness, str) or eagerness not in EAGERNESS_FALLBACK_MS:
        raise ClientError(f"{param}.eagerness must be one of {sorted(EAGERNESS_FALLBACK_MS)}", f"{param}.eagerness")
    known = {"type", "silence_duration_ms", "eagerness", "create_response", "interrupt_response",
             "threshold", "prefix_padding_ms", "idle_timeout_ms", PAUSE_EXTENSION}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ClientError(f"{param}.{unknown[0]} is not supported", f"{param}.{unknown[0]}")
    if value.get("idle_timeout_ms") is not None:
        raise ClientError(f"{param}.idle_timeout_ms is not supported", f"{param}.idle_timeout_ms")
    for flag in ("create_response", "interrupt_response", PAUSE_EXTENSION):
        if not isinstance(value.get(flag, True), bool):
            raise ClientError(f"{param}.{flag} must be true or false", f"{param}.{flag}")
    return TurnDetection(value["type"], silence, eagerness, bool(value.get("create_response", True)),
                         bool(value.get("interrupt_response", True)),
                         tuple((k, value[k]) for k in ("threshold", "prefix_padding_ms", PAUSE_EXTENSION)
                               if k in value))


# The beta's flat session fields, and where GA has them under `audio`.
BETA_AUDIO = {"input_audio_format": ("input", "format"), "output_audio_format": ("output", "format"),
              "turn_detection": ("input", "turn_detection"), "voice": ("output", "voice"),
              "speed": ("output", "speed"), "input_audio_noise_reduction": ("input", "noise_reduction")}
BETA_KEYS = {*BETA_AUDIO, "modalities", "max_response_output_tokens", "input_audio_transcription"}


def _beta(session: dict[str, Any]) -> dict[str, Any]:
    """The beta's flat fields in the GA's places."""
    moved: dict[str, Any] = {k: v for k, v in session.items()
                             if k not in BETA_AUDIO and k not in ("modalities", "max_response_output_tokens")}
    audio: dict[str, dict[str, Any]] = {"input": {}, "output": {}}
    for old, (side, new) in BETA_AUDIO.items():
        if old in session:
            audio[side][new] = session[old]
    if "modalities" in session:
        modalities = session["modalities"]
        if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
            raise ClientError("session.modalities must be a list of \"audio\" and \"text\"", "session.modalities")
        moved["output_modalities"] = [m for m in modalities if m != "text"] or ["text"]
    if "max_response_output_tokens" in session:
        moved["max_output_tokens"] = session["max_response_output_tokens"]
    moved["audio"] = audio
    return moved


def apply(config: RealtimeConfig, session: Any) -> RealtimeConfig:
    """`config` with a session.update's `session` applied."""
    if not isinstance(session, dict):
        raise ClientError("session must be an object", "session")
    if BETA_KEYS & set(session):  # no GA session has these at its top level: the beta's shape
        session = _beta(session)
    changes: dict[str, Any] = {}
    for key, value in session.items():
        param = f"session.{key}"
        if key in IGNORED:
            continue
        if key == "type" and value != "realtime":
            raise ClientError("session.type must be realtime (transcription sessions are not offered)", param)
        elif key == "model":
            changes["model"] = check_model(value, param)
        elif key == "instructions":
            if not isinstance(value, str):
                raise ClientError("session.instructions must be a string", param)
            changes["instructions"] = value
        elif key == "output_modalities":
            if value != ["audio"] and value != ["audio", "text"]:
                raise ClientError("session.output_modalities must be [\"audio\"]: replies are spoken", param)
        elif key == "max_output_tokens":
            if value != "inf":
                raise ClientError("session.max_output_tokens is not supported (the Voxtral service bounds replies)",
                                  param)
        elif key == "audio":
            changes.update(_audio(value))
        elif key == "tools":
            changes["tools"] = _tools(value)
        elif key == "tool_choice":
            if value not in ("auto", "none"):
                raise ClientError("session.tool_choice must be auto or none (the model chooses whether to call)",
                                  param)
            changes["tool_choice"] = value
        elif key != "type":
            raise ClientError(f"{param} is not supported", param)
    return replace(config, **changes)


def _audio(audio: Any) -> dict[str, Any]:
    if not isinstance(audio, dict):
        raise ClientError("session.audio must be an object", "session.audio")
    changes: dict[str, Any] = {}
    for side in set(audio) - {"input", "output"}:
        raise ClientError(f"session.audio.{side} is not supported", f"session.audio.{side}")
    inp, out = audio.get("input") or {}, audio.get("output") or {}
    for side, value in (("input", inp), ("output", out)):
        if not isinstance(value, dict):
            raise ClientError(f"session.audio.{side} must be an object", f"session.audio.{side}")
    for key, value in inp.items():
        param = f"session.audio.input.{key}"
        if key == "format":
            changes["input_format"] = audio_format(value, param)
        elif key == "turn_detection":
            changes["turn_detection"] = _turn_detection(value, param)
        elif key == "noise_reduction" and not (value is None or (
                isinstance(value, dict) and set(value) <= {"type"} and value.get("type") in NOISE_REDUCTION)):
            raise ClientError(f"{param} must be null or {{\"type\": \"near_field\" or \"far_field\"}}", param)
        elif key not in ("transcription", "noise_reduction"):
            raise ClientError(f"{param} is not supported", param)
    for key, value in out.items():
        param = f"session.audio.output.{key}"
        if key == "format":
            changes["output_format"] = audio_format(value, param)
        elif key == "voice":
            if value is not None and not isinstance(value, str):
                raise ClientError(f"{param} must be a voice name", param)
            changes["voice"] = "" if value in ("default", None) else value
        elif key == "speed":
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not SPEED.low <= value <= SPEED.high:
                raise ClientError(f"{param} must be a number from {SPEED.low} to {SPEED.high}", param)
            changes["speed"] = float(value)
        else:
            raise ClientError(f"{param} is not supported", param)
    return changes


def _tools(value: Any) -> tuple[Declared, ...]:
    """session.tools: OpenAI function declarations, checked by the rules every API shares."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ClientError("session.tools must be a list of functions", "session.tools")
    declared = []
    for n, tool in enumerate(value):
        param = f"session.tools[{n}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise ClientError(f"{param}.type must be function (no other kind of tool is offered)", f"{param}.type")
        unknown = sorted(set(tool) - {"type", "name", "description", "parameters"})
        if unknown:
            raise ClientError(f"{param}.{unknown[0]} is not supported", f"{param}.{unknown[0]}")
        name, description = tool.get("name"), tool.get("description", "")
        if not isinstance(name, str) or not isinstance(description, str):
            raise ClientError(f"{param}.name and .description must be strings", f"{param}.name")
        declared.append((name, description, json.dumps(tool.get("parameters") or {"type": "object", "properties": {}})))
    try:
        check_tools(declared)
    except InvalidArgument as exc:
        raise ClientError(f"session.{exc}", "session.tools") from None
    return tuple(declared)
