"""What a client sends a conversation, as typed values: the session request first, then audio
and controls. `configure` checks a request against the settings; each rule is written once."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.audio import MAX_RATE_HZ, MIN_RATE_HZ, check_sample_rate
from services.common.errors import InvalidArgument, echo
from services.common.limits import END_OF_TURN_FALLBACK, END_SILENCE_MS, SPEED, USER_TEXT_CHARS, check_session_id
from services.common.tools import MAX_RESULT_CHARS, ToolSpec, check_tools
from services.gateway.config import GatewaySettings
from services.gateway.engine.vocabulary import BargeInMode, Control, Detector

# A tool as a client declares it: name, description, parameters (JSON Schema as JSON).
Declared = tuple[str, str, str]


@dataclass(frozen=True)
class SessionRequest:
    """The session a client asks for; None and "" mean: the gateway's default."""

    input_rate_hz: int
    output_rate_hz: int | None = None
    voice: str = ""
    speed: float | None = None
    end_silence_ms: int | None = None
    instructions: str = ""
    resume_id: str = ""  # a session to resume; "" starts a new one
    manual_turns: bool = False  # no VAD: the client says when its turn ends (Commit)
    end_of_turn_fallback_ms: int | None = None  # the VAD's fallback silence for this session (None: its own)
    end_of_turn_detector: Detector | None = None  # None: the VAD's own
    barge_in: BargeInMode | None = None  # None: the gateway's (GATEWAY_BARGE_IN_REVERSIBLE)
    tools: tuple[Declared, ...] = ()  # functions the model may call


@dataclass(frozen=True)
class Audio:
    pcm: bytes  # PCM16LE mono at the session's input rate, any length


@dataclass(frozen=True)
class ControlInput:
    action: Control


@dataclass(frozen=True)
class PlaybackReport:
    """The client has played `played_ms` of reply `turn_id` (on the reply's timeline)."""

    turn_id: str
    played_ms: float


def check_playback(report: PlaybackReport) -> str:
    """What is wrong with a playback report ("" when nothing is)."""
    if not math.isfinite(report.played_ms) or report.played_ms < 0:
        return f"playback.played_ms={report.played_ms} must be a finite number of milliseconds, 0 or more"
    if not report.turn_id:
        return "playback.turn_id is required: the turn_id of the reply being played"
    return ""


@dataclass(frozen=True)
class Commit:
    """Manual turns: the user's turn ends now; the audio since the last commit (or clear) is it."""


@dataclass(frozen=True)
class ClearAudio:
    """Manual turns: drop the audio since the last commit."""


@dataclass(frozen=True)
class UserText:
    """A typed turn: answered as the user's next turn (a reply in progress is cut short)."""

    text: str


def check_text(item: UserText) -> str:
    """What is wrong with a typed turn ("" when nothing is)."""
    if not item.text.strip():
        return "text is empty: type the user's words"
    if len(item.text) > USER_TEXT_CHARS.high:
        return f"text has {len(item.text)} characters; the limit is {USER_TEXT_CHARS.high}"
    return ""


@dataclass(frozen=True)
class Update:
    """Change how later replies are made; None: unchanged."""

    voice: str | None = None
    speed: float | None = None
    instructions: str | None = None
    tools: tuple[Declared, ...] | None = None


@dataclass(frozen=True)
class ToolResult:
    """The client's result for the model's tool call `call_id` (any text; JSON is usual)."""

    call_id: str
    output: str


def check_tool_result(item: ToolResult) -> str:
    """What is wrong with a tool result ("" when nothing is)."""
    if not item.call_id:
        return "tool_result.call_id is required: the id of the tool_call it answers"
    if len(item.output) > MAX_RESULT_CHARS:
        return f"tool_result.output has {len(item.output)} characters; the limit is {MAX_RESULT_CHARS}"
    return ""


@dataclass(frozen=True)
class Unreadable:
    """An input the adapter could not make sense of: an error event, and the session goes on."""

    message: str


Input = (SessionRequest | Audio | ControlInput | PlaybackReport | Commit | ClearAudio | Update | UserText
         | ToolResult | Unreadable)


@dataclass(frozen=True)
class SessionConfig:
    """A checked session request with the defaults filled in."""

    input_rate_hz: int
    output_rate_hz: int
    voice: str
    speed: float | None
    end_silence_ms: int
    instructions: str
    resume_id: str
    manual_turns: bool = False
    end_of_turn_fallback_ms: int | None = None
    end_of_turn_detector: Detector | None = None
    barge_in: BargeInMode = BargeInMode.PAUSE
    tools: tuple[ToolSpec, ...] = ()


def configure(request: SessionRequest, settings: GatewaySettings, voices: set[str]) -> SessionConfig:
    """INVALID_ARGUMENT naming what is wrong and what is accepted; `voices` empty: not checked."""
    if request.input_rate_hz == 0:
        raise InvalidArgument(f"config.input_sample_rate_hz is required: an integer from {MIN_RATE_HZ} to "
                              f"{MAX_RATE_HZ} Hz")
    check_sample_rate(request.input_rate_hz, what="input_sample_rate_hz")
    output = request.output_rate_hz or settings.default_output_rate_hz
    check_sample_rate(output, what="output_sample_rate_hz")
    if request.voice and voices and request.voice not in voices:
        raise InvalidArgument(f"voice {echo(request.voice)} is unknown: the TTS offers {', '.join(sorted(voices))}")
    if request.speed is not None:
        SPEED.check("speed", request.speed)
    end_silence = settings.default_end_silence_ms if request.end_silence_ms is None else request.end_silence_ms
    END_SILENCE_MS.check("end_silence_ms", end_silence)
    if len(request.instructions) > settings.max_instructions_chars:
        raise InvalidArgument(f"instructions have {len(request.instructions)} characters; "
                              f"the limit is {settings.max_instructions_chars}")
    check_session_id(request.resume_id)
    if request.end_of_turn_fallback_ms is not None:
        END_OF_TURN_FALLBACK.check("end_of_turn_fallback_ms", request.end_of_turn_fallback_ms)
    barge_in = request.barge_in or (BargeInMode.PAUSE if settings.barge_in_reversible else BargeInMode.CANCEL)
    return SessionConfig(request.input_rate_hz, output, request.voice, request.speed, end_silence,
                         request.instructions, request.resume_id, request.manual_turns,
                         request.end_of_turn_fallback_ms, request.end_of_turn_detector, barge_in,
                         tuple(check_tools(request.tools)))


def updated(config: SessionConfig, update: Update, settings: GatewaySettings, voices: set[str]) -> SessionConfig:
    """The session's config with an update applied, checked by the same rules as at start."""
    return configure(SessionRequest(
        config.input_rate_hz, config.output_rate_hz,
        voice=config.voice if update.voice is None else update.voice,
        speed=config.speed if update.speed is None else update.speed,
        end_silence_ms=config.end_silence_ms,
        instructions=config.instructions if update.instructions is None else update.instructions,
        resume_id=config.resume_id, manual_turns=config.manual_turns,
        end_of_turn_fallback_ms=config.end_of_turn_fallback_ms, end_of_turn_detector=config.end_of_turn_detector,
        barge_in=config.barge_in,
        tools=tuple((t.name, t.description, t.as_json()) for t in config.tools) if update.tools is None
        else update.tools), settings, voices)
