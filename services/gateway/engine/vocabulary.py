"""The gateway's vocabularies, one str Enum each, used by the engine, both adapters and the logs."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    VAD = "vad"
    VOXTRAL = "voxtral"
    TTS = "tts"


class Detector(StrEnum):
    """What ends a user's turn (the VAD's end-of-turn detector)."""

    SILENCE = "silence"  # a fixed silence
    SMART_TURN = "smart_turn"  # the Smart Turn model, with a fallback silence


class VadEventKind(StrEnum):
    STARTED = "started"
    PAUSED = "paused"  # a short silence: a hint that the turn may be over
    RESUMED = "resumed"
    ENDED = "ended"


class EventType(StrEnum):
    """What a session tells its client; the WebSocket's "type" field and the proto's oneof names."""

    SESSION_STARTED = "session_started"
    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"
    RESPONSE_TEXT = "response_text"
    RESPONSE_AUDIO = "response_audio"
    TURN_COMPLETED = "turn_completed"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    REPLY_PAUSED = "reply_paused"
    REPLY_RESUMED = "reply_resumed"
    TEXT_TURN = "text_turn"
    TURN_ENDED = "turn_ended"
    TOOL_CALLED = "tool_called"


class Control(StrEnum):
    INTERRUPT = "interrupt"  # stop the reply in progress
    RESET_CONTEXT = "reset_context"  # forget the exchanges so far
    END_OF_INPUT = "end_of_input"  # no more audio: finish the turn in progress, then end


class Speculation(StrEnum):
    """What became of a reply started on a pause hint."""

    STARTED = "started"
    USED = "used"  # the speech-ended event confirmed it: its audio went out
    WASTED = "wasted"  # the user went on: cancelled


class TurnOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def wire(self) -> str:
        return f"TURN_OUTCOME_{self.value.upper()}"


class StopReason(StrEnum):
    """Why a reply was cut short (a turn's `reason` when it was interrupted)."""

    SPEECH = "user_speech"  # the user talked over it
    CLIENT = "client_interrupt"  # the client asked (interrupt, response.cancel)
    NEW_TURN = "new_turn"  # the client committed or typed the next turn


class BargeInMode(StrEnum):
    """What speech over a reply does in a session."""

    PAUSE = "pause"  # pause it, judge the speech: resume after a cough or "mm", cancel for a turn
    CANCEL = "cancel"  # cancel it at once (OpenAI Realtime's interrupt_response)
    OFF = "off"  # nothing: the reply goes on until the speech is a turn (then a new reply replaces it)
