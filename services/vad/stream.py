"""One StreamDetect call's decision loop: the endpointer fed with the caller's audio, the end-of-turn
model's asks answered off the event loop, and the events of both handed out in the order decided."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from services.common.errors import InvalidArgument
from services.vad.endpointer import Ask, Endpointer, SpeechEvent
from services.vad.smart_turn import DecisionPool
from services.vad.tracing import UtteranceTrace


class DetectStream:
    def __init__(self, decisions: DecisionPool) -> None:
        self.decisions = decisions
        self.endpointer: Endpointer | None = None
        self.utterance = UtteranceTrace()
        self._out: asyncio.Queue[SpeechEvent | BaseException | None] = asyncio.Queue()
        self._asks: set[asyncio.Task[None]] = set()

    def start(self, endpointer: Endpointer) -> None:
        if self.endpointer is not None:
            raise InvalidArgument("config was already sent: send it once, as the first message")
        self.endpointer = endpointer

    def push(self, pcm: bytes) -> None:
        if self.endpointer is None:
            raise InvalidArgument("the first message must be config (sample rate etc.), not audio")
        self._handle(self.endpointer.push(pcm))

    def finish(self) -> None:
        """No more audio: the utterance in progress ends, then the events do."""
        if self.endpointer is not None:
            self._handle(list(self.endpointer.finish()))
        self._out.put_nowait(None)

    def fail(self, err: BaseException) -> None:
        self._out.put_nowait(err)

    async def events(self) -> AsyncIterator[SpeechEvent]:
        """Every event until finish(); a failure is raised here, in the caller's generator."""
        while (item := await self._out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def close(self) -> None:
        for task in self._asks:
            task.cancel()
        await asyncio.gather(*self._asks, return_exceptions=True)

    def _handle(self, items: list[SpeechEvent | Ask]) -> None:
        for item in items:
            if isinstance(item, Ask):
                task = asyncio.create_task(self._decide(item))
                self._asks.add(task)
                task.add_done_callback(self._asks.discard)
            else:
                self.utterance.saw(item)
                self._out.put_nowait(item)

    async def _decide(self, ask: Ask) -> None:
        with self.utterance.span("vad.end_of_turn_model") as span:
            probability, compute_ms = await self.decisions.probability(ask.audio)
            span.set_attributes({"compute_ms": round(compute_ms, 2), "probability": probability or -1.0})
        if self.endpointer is not None:
            for event in self.endpointer.answer(ask, probability):
                self.utterance.saw(event)
                self._out.put_nowait(event)
