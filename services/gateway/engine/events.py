"""What a conversation tells its client: typed values that the adapters turn into messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from services.common.errors import Status
from services.common.latency import Metric
from services.common.tools import ToolCall
from services.gateway.engine.vocabulary import EventType, TurnOutcome


@dataclass(frozen=True)
class SessionStarted:
    type: ClassVar[EventType] = EventType.SESSION_STARTED
    session_id: str
    resumed: bool
    context_exchanges: int


@dataclass(frozen=True)
class SpeechStarted:
    type: ClassVar[EventType] = EventType.SPEECH_STARTED
    turn_id: str
    start_sample: int


@dataclass(frozen=True)
class SpeechEnded:
    type: ClassVar[EventType] = EventType.SPEECH_ENDED
    turn_id: str
    start_sample: int
    end_sample: int
    end_of_turn_probability: float | None = None


@dataclass(frozen=True)
class ResponseText:
    type: ClassVar[EventType] = EventType.RESPONSE_TEXT
    turn_id: str
    delta: str


@dataclass(frozen=True)
class ResponseAudio:
    type: ClassVar[EventType] = EventType.RESPONSE_AUDIO
    turn_id: str
    pcm: bytes
    sample_rate_hz: int
    text: str  # the clause this audio begins; "" for its later pieces
    offset_ms: float = 0.0  # where the audio starts on the reply's timeline


@dataclass(frozen=True)
class TurnCompleted:
    type: ClassVar[EventType] = EventType.TURN_COMPLETED
    turn_id: str
    user_text: str
    heard_text: str
    metrics: dict[Metric, float] = field(default_factory=dict)
    speculative: bool = False


@dataclass(frozen=True)
class Interrupted:
    type: ClassVar[EventType] = EventType.INTERRUPTED
    turn_id: str
    heard_text: str  # what the listener heard
    heard_ms: float = 0.0


@dataclass(frozen=True)
class ReplyPaused:
    type: ClassVar[EventType] = EventType.REPLY_PAUSED
    turn_id: str
    heard_ms: float


@dataclass(frozen=True)
class ReplyResumed:
    type: ClassVar[EventType] = EventType.REPLY_RESUMED
    turn_id: str
    heard_ms: float
    dismissed_turn_id: str = ""  # the speech judged no turn


@dataclass(frozen=True)
class TextTurn:
    """A typed turn was taken; its reply follows under this turn id."""

    type: ClassVar[EventType] = EventType.TEXT_TURN
    turn_id: str
    text: str


@dataclass(frozen=True)
class TurnEnded:
    """Every reply's end, once, whatever its outcome, when what is kept of it is known."""

    type: ClassVar[EventType] = EventType.TURN_ENDED
    turn_id: str
    outcome: TurnOutcome
    user_text: str  # transcribed or typed; "" when unknown
    user_text_known: bool
    heard_text: str  # what the listener heard of the reply
    cut_off: bool
    reason: str = ""  # failed: the stage and its error; interrupted: a StopReason
    metrics: dict[Metric, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorEvent:
    type: ClassVar[EventType] = EventType.ERROR
    code: Status
    message: str
    session_continues: bool = True
    turn_id: str = ""


@dataclass(frozen=True)
class ToolCalled:
    """The reply calls client tools (several at once when the model asks for them together) and
    waits for every result (ToolResult naming each call's id)."""

    type: ClassVar[EventType] = EventType.TOOL_CALLED
    turn_id: str
    calls: tuple[ToolCall, ...]


Event = (SessionStarted | SpeechStarted | SpeechEnded | ResponseText | ResponseAudio | TurnCompleted | Interrupted
         | ErrorEvent | ReplyPaused | ReplyResumed | TextTurn | TurnEnded | ToolCalled)
