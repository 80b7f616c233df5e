"""A turn from the engine's side: the user speaking (Listening), then the reply (Turn)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from services.gateway.engine.runner import TurnProgress, TurnRequest
from services.gateway.engine.tasks import TaskSet


@dataclass(frozen=True)
class Listening:
    """Speech has started and not ended yet."""

    turn_id: str
    start_sample: int


class Turn:
    """A reply, complete from the moment it starts: what it answers, how far it got, the task that
    runs it, and the transcription of the user's words. The turn alone starts that transcription,
    once Voxtral is free (the reply text done and its first audio out) or the reply has ended."""

    def __init__(self, request: TurnRequest, tasks: TaskSet,
                 answer: Callable[[Turn], Coroutine[Any, Any, None]],
                 transcribe: Callable[[TurnRequest], Coroutine[Any, Any, str]]) -> None:
        self.request = request
        self.progress = TurnProgress()
        self._voxtral_free = asyncio.Event()
        self.transcript: asyncio.Task[str] = tasks.spawn(self._transcribe(transcribe))
        self.task: asyncio.Task[None] = tasks.spawn(answer(self))

    @property
    def turn_id(self) -> str:
        return self.request.turn_id

    def voxtral_free(self) -> None:
        """Voxtral has no more work for this reply: the user's words can be asked for now."""
        self._voxtral_free.set()

    async def stop(self) -> None:
        """Cancel the reply (the transcription goes on) and wait until it has stopped."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.voxtral_free()  # a task cancelled before it ran never reached its own `finally`

    async def _transcribe(self, transcribe: Callable[[TurnRequest], Coroutine[Any, Any, str]]) -> str:
        await self._voxtral_free.wait()
        return await transcribe(self.request)
