"""A turn from the engine's side: the user speaking (Listening), then the reply (Turn)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from services.gateway.engine.playout import Playout
from services.gateway.engine.runner import TurnProgress, TurnRequest
from services.gateway.engine.tasks import TaskSet
from services.gateway.engine.vocabulary import TurnOutcome
from services.gateway.metrics import TURNS


@dataclass
class Listening:
    """Speech has started and not ended yet. Over a reply (`over`), it is judged: not a turn
    (`dismissed`: the reply resumed and the speech is not answered) or a turn (the reply cancelled)."""

    turn_id: str
    start_sample: int
    span: trace.Span = trace.INVALID_SPAN  # the turn's trace, from the start of the speech
    over: Turn | None = None  # the reply this speech paused
    dismissed: bool = False
    timer: asyncio.Task[None] | None = None  # ends the judging: speech this long is a turn

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Turn:
    """A reply, complete from the moment it starts: what it answers, how far it got, the task that
    runs it, and the transcription of the user's words. The turn alone starts that transcription,
    once Voxtral is free (the reply text done and all of it synthesised) or the reply has ended."""

    def __init__(self, request: TurnRequest, playout: Playout, tasks: TaskSet,
                 answer: Callable[[Turn], Coroutine[Any, Any, None]],
                 transcribe: Callable[[TurnRequest], Coroutine[Any, Any, str | None]],
                 span: trace.Span = trace.INVALID_SPAN) -> None:
        self.request = request
        self.span = span  # the turn's trace: the reply's stage calls are its children
        self.playout = playout
        self.progress = TurnProgress(playout)
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
        TURNS.labels(outcome=outcome).inc()
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

    async def _transcribe(self, transcribe: Callable[[TurnRequest], Coroutine[Any, Any, str | None]]) -> str | None:
        await self._voxtral_free.wait()
        return await transcribe(self.request)


def is_backchannel(words: str, backchannels: tuple[str, ...]) -> bool:
    """Are `words` nothing, or only listening sounds ("mm-hm", "yeah, okay")? Compared without case
    or punctuation; every part between commas must be one of `backchannels`."""
    known = {normal(b) for b in backchannels}
    parts = [normal(part) for part in re.split(r"[,.;!?]+", words)]
    parts = [part for part in parts if part]
    if not parts:
        return True
    return all(part in known or all(word in known for word in part.split()) for part in parts)


def normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s-]", " ", text.lower()).replace("-", " ").split())
