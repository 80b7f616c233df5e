"""Voxtral's work as the service offers it: a generation slot (replies before transcriptions),
the blocking model bridged from its worker thread to asyncio, and a stop within one decode step
when the caller goes. Plain asyncio; no gRPC in here (server.py translates)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from services.common.slots import SlotPool
from services.common.tools import ToolSpec
from services.voxtral.config import VoxtralSettings
from services.voxtral.engine import GenerationResult, VoxtralEngine
from services.voxtral.generation import GenerationParams
from services.voxtral.prompts import ModelInputs, Turn

# Queued work goes by kind: a reply a listener waits for, then a reply started speculatively (on a
# pause that may not end the turn), then a transcription (only the context waits on it).
RESPOND_PRIORITY, SPECULATIVE_PRIORITY, TRANSCRIBE_PRIORITY = 0, 1, 2


@dataclass(frozen=True)
class Delta:
    text: str
    elapsed_ms: float  # since the request arrived


@dataclass(frozen=True)
class ReplyDone:
    inputs: ModelInputs
    result: GenerationResult
    queue_ms: float
    ttft_ms: float
    elapsed_ms: float


@dataclass(frozen=True)
class Transcript:
    text: str
    compute_ms: float


class Responder:
    def __init__(self, settings: VoxtralSettings, engine: VoxtralEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.pool = SlotPool(settings.slots, settings.max_queue, "voxtral", settings.load_window_s)

    async def respond(self, samples: np.ndarray | None, history: Sequence[Turn], instructions: str,
                      params: GenerationParams, deadline: float, speculative: bool = False, text: str = "",
                      tools: Sequence[ToolSpec] = (), after: Sequence[Turn] = ()) -> AsyncIterator[Delta | ReplyDone]:
        """Text deltas as they are generated, then one ReplyDone (which holds any tool calls).
        `deadline` is time.monotonic(); `samples` None: the user typed `text`."""
        received = time.perf_counter()
        engine = self.engine
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str | None] = asyncio.Queue()  # None: generation is over
        stop = threading.Event()
        budget = self.settings.max_context_tokens - params.max_new_tokens
        priority = SPECULATIVE_PRIORITY if speculative else RESPOND_PRIORITY
        async with self.pool.slot(deadline, priority=priority) as slot:
            queue_ms = (time.perf_counter() - received) * 1000
            # The prompt is built in the slot's thread: never on the event loop, never before admission.
            inputs = await slot.run(lambda: engine.prompts.chat(samples, list(history), instructions, budget, text,
                                                                tools, after), deadline, what="prompt")

            def hand_on(delta: str) -> None:  # called in the worker thread
                loop.call_soon_threadsafe(deltas.put_nowait, delta)

            work = asyncio.ensure_future(slot.run(lambda: engine.generate(inputs, params, hand_on, stop, deadline,
                                                                          tools=bool(tools)),
                                                  deadline + 1.0, what="generate"))
            # Deltas the worker queued come first: its completion reaches the loop after them.
            work.add_done_callback(lambda _: deltas.put_nowait(None))
            ttft_ms: float | None = None
            try:
                while (delta := await deltas.get()) is not None:
                    elapsed_ms = (time.perf_counter() - received) * 1000
                    ttft_ms = elapsed_ms if ttft_ms is None else ttft_ms
                    yield Delta(delta, elapsed_ms)
                result = work.result()
            finally:
                stop.set()  # a cancelled or failed call stops generating within one decode step
        if result.finish_reason == "cancelled":
            raise TimeoutError("Voxtral ran past the call's deadline")
        yield ReplyDone(inputs, result, queue_ms, ttft_ms or 0.0, (time.perf_counter() - received) * 1000)

    async def transcribe(self, samples: np.ndarray, language: str, deadline: float) -> Transcript:
        started = time.perf_counter()
        engine = self.engine
        params = GenerationParams(self.settings.transcribe_max_new_tokens, 0, 0.0, 1.0, 0, 1.0)
        stop = threading.Event()
        async with self.pool.slot(deadline, priority=TRANSCRIBE_PRIORITY) as slot:
            try:
                inputs = await slot.run(lambda: engine.prompts.transcription(samples, language), deadline,
                                        what="prompt")
                result = await slot.run(lambda: engine.generate(inputs, params, lambda _: None, stop, deadline),
                                        deadline + 1.0, what="generate")
            finally:
                stop.set()
        if result.finish_reason == "cancelled":
            raise TimeoutError("transcription ran past the call's deadline")
        return Transcript(result.text.strip(), (time.perf_counter() - started) * 1000)

    def close(self) -> None:
        self.pool.close()
