"""A reply, whole: what it answers (ReplyRequest), how far it got (ReplyProgress: the metrics and what
the listener heard), and its life (Reply: the task that runs it, its end, the user's transcription)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry import trace

from services.common.latency import Metric
from services.common.tools import ToolSpec
from services.gateway.engine.playout import Playout
from services.gateway.engine.stages import HistoryTurn
from services.gateway.engine.tasks import TaskSet
from services.gateway.engine.tool_calls import PendingCalls
from services.gateway.engine.vocabulary import TurnOutcome
from services.gateway.metrics import GatewayMetrics


@dataclass
class ReplyRequest:
    turn_id: str
    session_id: str
    utterance: np.ndarray | None  # PCM16 at 16 kHz; None for a typed turn
    history: list[HistoryTurn]
    instructions: str
    voice: str
    speed: float | None
    output_rate_hz: int
    ended_at: float  # speech-ended event received (monotonic)
    endpoint_ms: float
    end_of_turn_probability: float | None = None  # the VAD model's answer that ended the turn
    speculative: bool = False  # started on a pause hint: its output waits for the speech-ended event
    utterance_end: int = 0  # input sample where the utterance answered ends
    text: str = ""  # a typed turn's words
    tools: tuple[ToolSpec, ...] = ()  # client functions the model may call


@dataclass
class ReplyProgress:
    """What happened so far: survives cancellation (barge-in) so the heard part can be kept."""

    playout: Playout
    metrics: dict[Metric, float] = field(default_factory=dict)
    tools: PendingCalls = field(default_factory=PendingCalls)

    @property
    def heard_text(self) -> str:
        """What the listener heard."""
        return self.playout.heard_text()

    @property
    def cut_off(self) -> bool:
        return self.playout.cut_off


class Reply:
    """A reply, complete from the moment it starts: what it answers, how far it got, the task that
    runs it, and the transcription of the user's words. The turn alone starts that transcription,
    once Voxtral is free (the reply text done and all of it synthesised) or the reply has ended."""

    def __init__(self, request: ReplyRequest, playout: Playout, tasks: TaskSet,
                 answer: Callable[[Reply], Coroutine[Any, Any, None]],
                 transcribe: Callable[[ReplyRequest], Coroutine[Any, Any, str | None]], metrics: GatewayMetrics,
                 span: trace.Span = trace.INVALID_SPAN) -> None:
        self.request = request
        self.metrics = metrics
        self.span = span  # the turn's trace: the reply's stage calls are its children
        self.playout = playout
        self.progress = ReplyProgress(playout)
        self.confirmed = asyncio.Event()  # a speculative reply is confirmed by the speech-ended event
        if not request.speculative:
            self.confirmed.set()
        self._voxtral_free = asyncio.Event()
        self.outcome: TurnOutcome | None = None  # set once: how the reply ended
        self.reason = ""
        with trace.use_span(span, end_on_exit=False):  # the tasks start in the turn's trace
            self.transcript: asyncio.Task[str | None] = tasks.spawn(self._transcribe(transcribe))
            self.task: asyncio.Task[None] = tasks.spawn(answer(self))

    @property
    def turn_id(self) -> str:
        return self.request.turn_id

    def end(self, outcome: TurnOutcome, reason: str = "") -> bool:
        """The reply's one outcome, counted once; False when it already has one."""
        if self.outcome is not None:
            return False
        self.outcome, self.reason = outcome, reason
        self.metrics.turns.labels(outcome=outcome).inc()
        return True

    def voxtral_free(self) -> None:
        """Voxtral has no more work for this reply: the user's words can be asked for now."""
        self._voxtral_free.set()

    async def stop(self) -> None:
        """Cancel the reply (the transcription goes on) and wait until it has stopped."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.voxtral_free()  # a task cancelled before it ran never reached its own `finally`

    def confirm(self) -> None:
        """The speech-ended event came where the speculation stopped listening: let it out."""
        self.confirmed.set()
        self.playout.release()

    async def discard(self) -> None:
        """A speculative reply nobody will hear: cancel it and its transcription."""
        self.transcript.cancel()
        await self.stop()
        await asyncio.gather(self.transcript, return_exceptions=True)

    async def _transcribe(self, transcribe: Callable[[ReplyRequest], Coroutine[Any, Any, str | None]]) -> str | None:
        await self._voxtral_free.wait()
        return await transcribe(self.request)
