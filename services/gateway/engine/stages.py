"""How the engine reaches the stage services: a Protocol and the plain values it speaks.
The gRPC implementation is services/gateway/grpc_stages.py; tests use an in-memory fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.common.errors import Status
from services.common.load import StageLoad
from services.common.tools import ToolCall, ToolSpec
from services.gateway.engine.vocabulary import Detector, Stage, VadEventKind


class StageError(Exception):
    """A stage call failed with `code`, the status the stage answered with."""

    def __init__(self, stage: Stage, code: Status | str, message: str) -> None:
        super().__init__(f"{stage}: {code}: {message}")
        self.stage, self.message = stage, message
        self.code = code if isinstance(code, Status) else Status.parse(code)


@dataclass(frozen=True)
class VadEvent:
    kind: VadEventKind
    start_sample: int  # on the stream's own timeline (sample 0: the first audio sent to it)
    end_sample: int
    probability: float | None = None  # the end-of-turn model's latest answer (PAUSED, ENDED)
    voiced_ms: float = 0.0  # voiced time of the utterance so far


@dataclass(frozen=True)
class ReplyDelta:
    text: str
    elapsed_ms: float  # Voxtral's own time since it got the request
    tool_calls: tuple[ToolCall, ...] = ()  # the last delta of a reply that called tools
    tool_call_error: str = ""  # the last delta of one whose call could not be read


@dataclass(frozen=True)
class SpeechChunk:
    pcm: bytes
    text: str
    compute_ms: float


@dataclass(frozen=True)
class HistoryTurn:
    role: str  # user, assistant or tool (a tool's result)
    text: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn that called tools
    tool_call_id: str = ""  # a tool turn: the call it answers


class VadStream(Protocol):
    """One session's open voice-detection stream."""

    async def send(self, pcm: bytes) -> None: ...

    async def trace(self, carrier: dict[str, str]) -> None:
        """The utterance in progress belongs to this trace (W3C trace context)."""

    async def finish(self) -> None:
        """No more audio: the stream closes the utterance in progress and ends."""

    def events(self) -> AsyncIterator[VadEvent]: ...

    def cancel(self) -> None: ...


class Stages(Protocol):
    """Every call raises StageError when its stage fails."""

    def connect(self) -> None:
        """Start connecting to every stage (a first turn should not pay for it)."""

    async def open_vad(self, sample_rate_hz: int, end_silence_ms: int, fallback_ms: int | None = None,
                       detector: Detector | None = None) -> VadStream: ...

    def respond(self, pcm16k: np.ndarray | None, history: Sequence[HistoryTurn], instructions: str,
                session_id: str, turn_id: str, speculative: bool = False, text: str = "",
                tools: Sequence[ToolSpec] = (), after: Sequence[HistoryTurn] = ()) -> AsyncIterator[ReplyDelta]:
        """The user's words as audio, or (`pcm16k` None) as typed `text`. `speculative`: started
        before the speaker is known to have finished (queued after replies a listener waits for).
        `tools`: what the model may call; `after`: this reply's calls and their results so far."""

    def synthesize(self, text: str, voice: str, speed: float | None, sample_rate_hz: int,
                   session_id: str, turn_id: str, more_follows: bool = False,
                   need_in_ms: int = 0) -> AsyncIterator[SpeechChunk]:
        """`more_follows`: another clause of the reply comes after this one (the audio ends with the
        clause pause, heard while that one is synthesised). `need_in_ms`: when the listener needs its
        first sample (the TTS serves the earliest need first)."""

    async def transcribe(self, pcm16k: np.ndarray, session_id: str, turn_id: str) -> str: ...

    async def voices(self) -> set[str]: ...

    async def load(self, stage: Stage) -> StageLoad:
        """A model stage's slot use and queue waits (Stage.VOXTRAL or Stage.TTS)."""

    async def close(self) -> None: ...
