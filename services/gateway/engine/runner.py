"""Running one turn: Voxtral's streamed reply, cut into clauses, spoken clause by clause, timed.
Plain asyncio over the stage calls; no gRPC in here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from services.common.clauses import ClauseSplitter
from services.gateway.config import GatewaySettings
from services.gateway.engine.events import Event, ResponseAudio, ResponseText
from services.gateway.engine.stages import HistoryTurn, SpeechChunk, Stages


@dataclass
class TurnRequest:
    turn_id: str
    session_id: str
    utterance: np.ndarray  # PCM16 at 16 kHz
    history: list[HistoryTurn]
    instructions: str
    voice: str
    speed: float | None
    output_rate_hz: int
    ended_at: float  # speech-ended event received (monotonic)
    endpoint_ms: float
    end_of_turn_probability: float | None = None  # the VAD model's answer that ended the turn


@dataclass
class TurnProgress:
    """What happened so far: survives cancellation (barge-in) so the spoken part can be kept."""

    spoken: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def spoken_text(self) -> str:
        return " ".join(self.spoken)


# The share of a clause's playing time that the next clause's synthesis may take (the rest is
# transport and scheduling).
SYNTHESIS_HEADROOM = 0.8


class SynthesisPace:
    """Synthesis time per second of audio, as the TTS has delivered it to this gateway (a moving
    average over every session's clauses; they share the TTS)."""

    def __init__(self) -> None:
        self.rtf: float | None = None  # None until the first clause

    def observe(self, chunk: SpeechChunk, sample_rate_hz: int) -> None:
        audio_ms = len(chunk.pcm) / 2 / sample_rate_hz * 1000
        if audio_ms <= 0 or chunk.compute_ms <= 0:
            return
        rtf = chunk.compute_ms / audio_ms
        self.rtf = rtf if self.rtf is None else 0.7 * self.rtf + 0.3 * rtf

    def growth(self, setting: float) -> float:
        """How much longer to say a clause may be than the one before: the setting, or less when the
        TTS as measured would not finish it while the one before is being heard."""
        if setting <= 0 or self.rtf is None or self.rtf <= 0:
            return setting
        return max(1.0, min(setting, SYNTHESIS_HEADROOM / self.rtf))


class TurnRunner:
    """Runs a session's turns, one at a time."""

    def __init__(self, settings: GatewaySettings, stages: Stages, emit: Callable[[Event], Awaitable[None]],
                 pace: SynthesisPace | None = None) -> None:
        self.settings = settings
        self.stages = stages
        self.emit = emit
        self.pace = pace or SynthesisPace()

    async def run(self, turn: TurnRequest, progress: TurnProgress,
                  on_voxtral_free: Callable[[], None] = lambda: None) -> None:
        """Runs the turn. `on_voxtral_free` is called once Voxtral has finished the reply text and the
        first audio is out: other Voxtral work started then cannot slow this reply's first clause."""
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        pending = {"text", "audio"}

        def done(part: str) -> None:
            if part in pending:
                pending.discard(part)
                if not pending:
                    on_voxtral_free()

        marks: dict[str, float] = {}
        m = progress.metrics
        m["endpoint_ms"] = turn.endpoint_ms
        requested = time.monotonic()

        async def hand_on(clause: str, voxtral_ms: float | None) -> None:
            """Queue a clause for speech; the first one also marks Voxtral's share of e2e (its own
            elapsed time when a delta carried it, else the time seen here)."""
            if "first_clause_ms" not in m:
                m["first_clause_ms"] = (time.monotonic() - requested) * 1000
                marks["voxtral_compute_ms"] = m["first_clause_ms"] if voxtral_ms is None else voxtral_ms
            await clauses.put(clause)

        async def generate() -> None:
            growth = self.pace.growth(self.settings.clause_growth)
            splitter = ClauseSplitter(first_words=self.settings.first_clause_words,
                                      first_clause_s=self.settings.first_clause_s, growth=growth)
            try:
                async for delta in self.stages.respond(turn.utterance, turn.history, turn.instructions,
                                                       turn.session_id, turn.turn_id):
                    if "voxtral_ttft_ms" not in m:
                        m["voxtral_ttft_ms"] = (time.monotonic() - requested) * 1000
                    await self.emit(ResponseText(turn.turn_id, delta.text))
                    for clause in splitter.push(delta.text):
                        await hand_on(clause, delta.elapsed_ms)
                done("text")
                for clause in splitter.flush():
                    await hand_on(clause, None)
            finally:
                clauses.put_nowait(None)  # the speaker stops waiting, whatever happened here

        producer = asyncio.create_task(generate())
        try:
            await self._speak(turn, clauses, progress, marks, lambda: done("audio"))
            await producer
        finally:
            producer.cancel()
        if "e2e_ms" in m:
            m["turn_ms"] = (time.monotonic() - turn.ended_at) * 1000
            # What the stages report as their own work; the rest of e2e is transport and orchestration.
            stage_ms = marks.get("voxtral_compute_ms", 0.0) + marks.get("tts_compute_ms", 0.0)
            m["overhead_ms"] = max(0.0, m["e2e_ms"] - stage_ms)

    async def _speak(self, turn: TurnRequest, clauses: asyncio.Queue[str | None], progress: TurnProgress,
                     marks: dict[str, float], on_first_audio: Callable[[], None]) -> None:
        """Clause k+1 is synthesised while clause k is sent; audio goes out in clause order."""
        m = progress.metrics
        window = asyncio.Semaphore(self.settings.tts_prefetch + 1)
        ordered: asyncio.Queue[tuple[str, asyncio.Queue[SpeechChunk | None], asyncio.Task[None], float] | None]
        ordered = asyncio.Queue()
        tasks: list[asyncio.Task[None]] = []

        async def feed() -> None:
            while (clause := await clauses.get()) is not None:
                await window.acquire()
                chunks: asyncio.Queue[SpeechChunk | None] = asyncio.Queue()
                task = asyncio.create_task(self._synthesize(turn, clause, chunks))
                tasks.append(task)
                await ordered.put((clause, chunks, task, time.monotonic()))
            await ordered.put(None)

        feeder = asyncio.create_task(feed())
        try:
            while (item := await ordered.get()) is not None:
                _clause, chunks, task, sent_at = item
                while (chunk := await chunks.get()) is not None:
                    if not chunk.pcm:
                        continue
                    self.pace.observe(chunk, turn.output_rate_hz)
                    if "tts_ttfb_ms" not in m:
                        m["tts_ttfb_ms"] = (time.monotonic() - sent_at) * 1000
                        marks["tts_compute_ms"] = chunk.compute_ms
                    # Shielded: a chunk that starts going out goes out whole (and before any Interrupted
                    # event, which waits behind it for the writer), so `spoken` is exactly what was sent.
                    write = asyncio.ensure_future(
                        self.emit(ResponseAudio(turn.turn_id, chunk.pcm, turn.output_rate_hz, chunk.text)))
                    # Read the outcome of a write nobody awaits any more (a client gone mid-chunk).
                    write.add_done_callback(lambda w: w.cancelled() or w.exception())
                    try:
                        await asyncio.shield(write)
                    except asyncio.CancelledError:
                        progress.spoken.append(chunk.text)
                        raise
                    progress.spoken.append(chunk.text)
                    if "e2e_ms" not in m:
                        m["e2e_ms"] = (time.monotonic() - turn.ended_at) * 1000
                        on_first_audio()
                await task  # a failed clause fails the turn
                window.release()
            await feeder
        finally:
            feeder.cancel()
            for task in tasks:
                task.cancel()

    async def _synthesize(self, turn: TurnRequest, clause: str, chunks: asyncio.Queue[SpeechChunk | None]) -> None:
        try:
            async for chunk in self.stages.synthesize(clause, turn.voice, turn.speed, turn.output_rate_hz,
                                                      turn.session_id, turn.turn_id):
                await chunks.put(chunk)
        finally:
            chunks.put_nowait(None)
