"""Running one reply: Voxtral's streamed reply, cut into clauses, spoken clause by clause, timed.
Plain asyncio over the stage calls; no gRPC in here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.common import tracing
from services.common.clauses import ClauseSplitter
from services.common.errors import Status
from services.common.latency import Metric
from services.common.tools import ToolCall
from services.gateway.config import GatewaySettings
from services.gateway.engine.events import Event, ResponseAudio, ResponseText, ToolCalled
from services.gateway.engine.pace import SynthesisPace
from services.gateway.engine.playout import Piece
from services.gateway.engine.reply import ReplyProgress, ReplyRequest
from services.gateway.engine.stages import HistoryTurn, SpeechChunk, StageError, Stages
from services.gateway.engine.tool_calls import ToolError


@dataclass
class StageTimes:
    """What the stages report as their own work on the first clause: Voxtral's share of e2e (its own
    time, or as seen here) and the TTS's compute for its first audio."""

    voxtral_ms: float = 0.0
    tts_ms: float = 0.0


class ReplyRunner:
    """Runs a session's turns, one at a time."""

    def __init__(self, settings: GatewaySettings, stages: Stages, emit: Callable[[Event], Awaitable[None]],
                 pace: SynthesisPace | None = None) -> None:
        self.settings = settings
        self.stages = stages
        self.emit = emit
        self.pace = pace or SynthesisPace()

    async def run(self, turn: ReplyRequest, progress: ReplyProgress,
                  on_voxtral_free: Callable[[], None] = lambda: None) -> None:
        """Runs the turn. `on_voxtral_free` is called once Voxtral has finished the reply text and every
        clause is synthesised: other work started then (the user's transcription) slows no clause of
        this reply, on a machine whose stages share cores."""
        await _Run(self, turn, progress, on_voxtral_free).run()

    async def synthesize(self, turn: ReplyRequest, clause: str, more_follows: bool, need_in_ms: int,
                         chunks: asyncio.Queue[SpeechChunk | None]) -> None:
        """One clause spoken: its chunks into `chunks` as they come, then None."""
        sent_at, compute_ms = time.monotonic(), 0.0
        try:
            with tracing.span("tts.synthesize", chars=len(clause), more_follows=more_follows,
                              need_in_ms=need_in_ms) as span:
                async for chunk in self.stages.synthesize(clause, turn.voice, turn.speed, turn.output_rate_hz,
                                                          turn.session_id, turn.turn_id, more_follows, need_in_ms):
                    if not compute_ms:
                        span.add_event("first_audio", {Metric.TTS_TTFB: (time.monotonic() - sent_at) * 1000})
                    compute_ms += chunk.compute_ms
                    await chunks.put(chunk)
                span.set_attribute("compute_ms", round(compute_ms, 2))
        finally:
            chunks.put_nowait(None)


Synthesis = tuple[asyncio.Queue[SpeechChunk | None], asyncio.Task[None], float]  # a clause's chunks, task, start


class _Run:
    """One reply as it runs: the text Voxtral streams, cut into clauses, each synthesised as fast as
    the TTS goes and played in clause order, paced as the listener hears it; and its clock (the
    metrics, each taken the first time its moment comes)."""

    def __init__(self, runner: ReplyRunner, turn: ReplyRequest, progress: ReplyProgress,
                 on_voxtral_free: Callable[[], None]) -> None:
        self.runner = runner
        self.turn = turn
        self.m = progress.metrics
        self.playout = progress.playout
        self.tools = progress.tools
        self.on_voxtral_free = on_voxtral_free
        self.times = StageTimes()
        self.clauses: asyncio.Queue[tuple[str, bool] | None] = asyncio.Queue()  # (text, more follows)
        self.pending = {"text", "speech"}  # Voxtral is free once both are done
        self.held_text: list[ResponseText] = []  # a held (speculative) reply's text waits for its release
        self.requested = time.monotonic()
        self.m[Metric.ENDPOINT] = turn.endpoint_ms

    async def run(self) -> None:
        producer = asyncio.create_task(self.generate())
        try:
            await self.speak()
            await producer
        finally:
            producer.cancel()
        await self.text_out(None)
        m = self.m
        if Metric.E2E in m:
            # What the stages report as their own work, less what a speculative start did before the
            # speech ended; the rest of e2e is transport and orchestration.
            stage_ms = self.times.voxtral_ms + self.times.tts_ms
            ahead_ms = max(0.0, (self.turn.ended_at - self.requested) * 1000)
            m[Metric.OVERHEAD] = max(0.0, m[Metric.E2E] - max(0.0, stage_ms - ahead_ms))

    def done(self, part: str) -> None:
        if part in self.pending:
            self.pending.discard(part)
            if not self.pending:
                self.on_voxtral_free()

    async def text_out(self, event: ResponseText | None) -> None:
        if event is not None:
            self.held_text.append(event)
        while self.held_text and not self.playout.held:
            await self.runner.emit(self.held_text.pop(0))

    async def hand_on(self, clause: str, voxtral_ms: float | None, more_follows: bool = True) -> None:
        """Queue a clause for speech; the first one also marks Voxtral's share of e2e (its own elapsed
        time when a delta carried it, else the time seen here). A clause cut while text still streams
        is taken to have a follower (at worst the reply ends in a short pause)."""
        if Metric.FIRST_CLAUSE not in self.m:
            self.m[Metric.FIRST_CLAUSE] = (time.monotonic() - self.requested) * 1000
            self.times.voxtral_ms = self.m[Metric.FIRST_CLAUSE] if voxtral_ms is None else voxtral_ms
        await self.clauses.put((clause, more_follows))

    async def generate(self) -> None:
        settings = self.runner.settings
        try:  # nothing here may raise outside it: the speaker waits for the end it puts
            growth = self.runner.pace.growth(settings.clause_growth)
            splitter = ClauseSplitter(first_words=settings.first_clause_words, first_clause_s=settings.first_clause_s,
                                      growth=growth)
            rounds = 0
            while calls := await self.respond(splitter, list(self.tools.turns)):  # the calls and results so far
                rounds += 1
                if rounds > settings.max_tool_rounds:
                    raise ToolError(Status.FAILED_PRECONDITION, f"the model called tools {rounds} times in one "
                                    f"reply; the limit is {settings.max_tool_rounds}")
                for clause in splitter.flush():  # what it said before the call is heard while the tool works
                    await self.hand_on(clause, None)
                await self.call_tools(calls)
            self.done("text")
            rest = splitter.flush()
            for n, clause in enumerate(rest):
                await self.hand_on(clause, None, more_follows=n < len(rest) - 1)
        finally:
            self.clauses.put_nowait(None)  # the speaker stops waiting, whatever happened here

    async def respond(self, splitter: ClauseSplitter, after: list[HistoryTurn]) -> tuple[ToolCall, ...]:
        """One Voxtral call: its text into clauses as it streams; the tools it calls, if it does."""
        turn, m = self.turn, self.m
        calls: tuple[ToolCall, ...] = ()
        with tracing.span("voxtral.respond", speculative=turn.speculative, after=len(after)) as span:
            async for delta in self.runner.stages.respond(turn.utterance, turn.history, turn.instructions,
                                                          turn.session_id, turn.turn_id, turn.speculative,
                                                          turn.text, tools=turn.tools, after=after):
                if delta.tool_call_error:
                    raise ToolError(Status.INTERNAL, delta.tool_call_error)
                calls = calls or delta.tool_calls
                if not delta.text:
                    continue
                if Metric.VOXTRAL_TTFT not in m:
                    m[Metric.VOXTRAL_TTFT] = (time.monotonic() - self.requested) * 1000
                    span.add_event("first_token", {Metric.VOXTRAL_TTFT: m[Metric.VOXTRAL_TTFT]})
                await self.text_out(ResponseText(turn.turn_id, delta.text))
                for clause in splitter.push(delta.text):
                    await self.hand_on(clause, delta.elapsed_ms)
        return calls

    async def call_tools(self, calls: tuple[ToolCall, ...]) -> None:
        """The client is asked (once a speculative reply is confirmed: a call may act) and the reply
        waits for every result, saying the filler if they are slow."""
        settings = self.runner.settings
        await self.playout.released()
        self.tools.expect(calls)
        with tracing.span("tools.call", tools=",".join(c.name for c in calls)):
            await self.runner.emit(ToolCalled(self.turn.turn_id, calls))
            filler = asyncio.create_task(self.fill(settings.tool_filler, settings.tool_filler_after_ms / 1000)) \
                if settings.tool_filler else None
            try:
                await self.tools.results(calls, settings.tool_timeout_s)
            finally:
                if filler is not None:
                    filler.cancel()

    async def fill(self, phrase: str, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await self.hand_on(phrase, None)

    async def speak(self) -> None:
        """Clauses are synthesised one after another as fast as the TTS goes; the playout sends their
        audio in clause order, paced as the listener hears it."""
        window = asyncio.Semaphore(self.runner.settings.tts_prefetch + 1)
        ordered: asyncio.Queue[Synthesis | None] = asyncio.Queue()
        tasks: list[asyncio.Task[None]] = []
        self.playout.attach(self.send)
        feeder = asyncio.create_task(self.feed(window, ordered, tasks))
        pump = asyncio.create_task(self.playout.run())
        try:
            while (item := await ordered.get()) is not None:
                chunks, task, sent_at = item
                await self.play(chunks, sent_at)
                try:
                    await task  # a failed clause fails the turn...
                except StageError:
                    feeder.cancel()
                    self.playout.complete()  # ...once the audio it has is heard
                    await pump
                    raise
                window.release()
            await feeder
            self.done("speech")
            self.playout.complete()
            await pump  # the listener has heard it all
        finally:
            feeder.cancel()
            pump.cancel()
            for task in tasks:
                task.cancel()

    async def feed(self, window: asyncio.Semaphore, ordered: asyncio.Queue[Synthesis | None],
                   tasks: list[asyncio.Task[None]]) -> None:
        """Start each clause's synthesis once the prefetch window has room, in clause order."""
        while (item := await self.clauses.get()) is not None:
            await window.acquire()
            chunks: asyncio.Queue[SpeechChunk | None] = asyncio.Queue()
            # Needed when what the listener has (heard or queued) runs out: the TTS's deadline order.
            need_in_ms = int(self.playout.needs_more_in() * 1000)
            task = asyncio.create_task(self.runner.synthesize(self.turn, *item, need_in_ms, chunks))
            tasks.append(task)
            await ordered.put((chunks, task, time.monotonic()))
        await ordered.put(None)

    async def play(self, chunks: asyncio.Queue[SpeechChunk | None], sent_at: float) -> None:
        """One clause's audio into the playout as it comes."""
        while (chunk := await chunks.get()) is not None:
            if not chunk.pcm:
                continue
            self.runner.pace.observe(chunk, self.turn.output_rate_hz)
            if Metric.TTS_TTFB not in self.m:
                self.m[Metric.TTS_TTFB] = (time.monotonic() - sent_at) * 1000
                self.times.tts_ms = chunk.compute_ms
            self.playout.add(chunk.pcm, chunk.text)

    async def send(self, piece: Piece) -> None:
        turn, m = self.turn, self.m
        await self.text_out(None)  # text held with a speculative reply goes first
        # Shielded: a piece that starts going out goes out whole (a WebSocket sends it as two
        # frames), and before any event that follows the cancellation, which waits for the writer.
        write = asyncio.ensure_future(self.runner.emit(ResponseAudio(turn.turn_id, piece.pcm, turn.output_rate_hz,
                                                                     piece.text, piece.offset_ms)))
        write.add_done_callback(lambda w: w.cancelled() or w.exception())  # read by nobody when the client is gone
        await asyncio.shield(write)
        now = time.monotonic()
        if Metric.E2E not in m:
            m[Metric.E2E] = (now - turn.ended_at) * 1000
            m[Metric.ENDPOINT] = turn.endpoint_ms  # a speculative turn learns it when confirmed
        if Metric.FIRST_AUDIBLE not in m and self.playout.audible_heard_at is not None:
            m[Metric.FIRST_AUDIBLE] = (self.playout.audible_heard_at - turn.ended_at) * 1000
        m[Metric.TURN] = (now - turn.ended_at) * 1000
