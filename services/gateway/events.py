"""What a conversation session tells its client: plain values, turned into messages by server.py."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SessionStarted:
    session_id: str
    resumed: bool
    context_exchanges: int


@dataclass(frozen=True)
class SpeechStarted:
    turn_id: str
    start_sample: int


@dataclass(frozen=True)
class SpeechEnded:
    turn_id: str
    start_sample: int
    end_sample: int


@dataclass(frozen=True)
class ResponseText:
    turn_id: str
    delta: str


@dataclass(frozen=True)
class ResponseAudio:
    turn_id: str
    pcm: bytes
    sample_rate_hz: int
    text: str


@dataclass(frozen=True)
class TurnCompleted:
    turn_id: str
    user_text: str
    assistant_text: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Interrupted:
    turn_id: str
    spoken_text: str


@dataclass(frozen=True)
class ErrorEvent:
    code: str  # INVALID_ARGUMENT, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, UNAVAILABLE or INTERNAL
    message: str
    session_continues: bool = True
    turn_id: str = ""


Event = (SessionStarted | SpeechStarted | SpeechEnded | ResponseText | ResponseAudio | TurnCompleted | Interrupted
         | ErrorEvent)
