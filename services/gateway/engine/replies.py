"""A session's replies: the one in progress (answering), the one started on a pause hint and held
(speculating), how each runs, is stopped, and what is kept of it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import numpy as np
from opentelemetry import trace

from services.common import tracing
from services.common.audio import resample
from services.common.errors import echo
from services.common.latency import Metric, by_name
from services.common.limits import VOXTRAL_SAMPLE_RATE_HZ
from services.common.logs import bound
from services.common.tools import answered
from services.gateway.config import GatewaySettings
from services.gateway.engine.barge_in import Listening
from services.gateway.engine.events import ErrorEvent, Event, Interrupted, TurnCompleted, TurnEnded
from services.gateway.engine.inputs import SessionConfig
from services.gateway.engine.memory import Memory
from services.gateway.engine.pace import SynthesisPace
from services.gateway.engine.playout import Playout
from services.gateway.engine.reply import Reply
from services.gateway.engine.runner import ReplyRequest, ReplyRunner
from services.gateway.engine.stages import StageError, Stages, VadEvent
from services.gateway.engine.tasks import TaskSet
from services.gateway.engine.timeline import InputTimeline
from services.gateway.engine.tool_calls import ToolError
from services.gateway.engine.vocabulary import Speculation, StopReason, TurnOutcome
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


class Replies:
    def __init__(self, settings: GatewaySettings, stages: Stages, config: SessionConfig, session_id: str,
                 memory: Memory, timeline: InputTimeline, emit: Callable[[Event], Awaitable[None]],
                 tasks: TaskSet, metrics: GatewayMetrics, pace: SynthesisPace | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stages = stages
        self.config = config
        self.session_id = session_id
        self.memory = memory
        self.timeline = timeline
        self.emit = emit
        self._tasks = tasks
        self.runner = ReplyRunner(settings, stages, emit, pace)
        self.answering: Reply | None = None  # the reply in progress
        self.speculating: Reply | None = None  # a reply started on a pause hint, held until speech-ended
        self.stopped: Reply | None = None  # the last reply stopped: a late playback report still counts
        self.ended_calls: deque[str] = deque(maxlen=256)  # tool calls of replies that have ended

    def speculate(self, listening: Listening, event: VadEvent) -> None:
        """A pause that may end the turn: start the reply now, its output held until speech-ended."""
        p = event.probability
        if not self.settings.speculate or (p is not None and p < self.settings.speculate_min_probability):
            return
        self.speculating = self.new_turn(listening.turn_id, listening.start_sample, event.end_sample,
                                           time.monotonic(), 0.0, p, speculative=True, span=listening.span)
        self.metrics.speculations.labels(result=Speculation.STARTED).inc()

    def confirm(self, turn: Reply, ended_at: float, endpoint_ms: float, probability: float | None) -> None:
        request = turn.request
        request.ended_at, request.endpoint_ms, request.end_of_turn_probability = ended_at, endpoint_ms, probability
        self.answering = turn
        turn.confirm()
        self.metrics.speculations.labels(result=Speculation.USED).inc()

    async def drop_speculation(self) -> None:
        spec, self.speculating = self.speculating, None
        if spec is not None:
            await self.waste(spec)

    async def waste(self, turn: Reply) -> None:
        await turn.discard()
        self.metrics.speculations.labels(result=Speculation.WASTED).inc()

    def utterance(self, start: int, end: int) -> np.ndarray:
        """Input samples start..end at Voxtral's rate (the last max_utterance_s of them)."""
        max_samples = int(self.settings.max_utterance_s * self.config.input_rate_hz)
        pcm = self.timeline.cut(max(start, end - max_samples), end)
        return resample(pcm, self.config.input_rate_hz, VOXTRAL_SAMPLE_RATE_HZ)

    def new_turn(self, turn_id: str, start: int, end: int, ended_at: float, endpoint_ms: float,
                  end_of_turn_probability: float | None, speculative: bool = False,
                  span: trace.Span = trace.INVALID_SPAN) -> Reply:
        return self._turn(ReplyRequest(
            turn_id, self.session_id, self.utterance(start, end), self.memory.history(), self.config.instructions,
            self.config.voice, self.config.speed, self.config.output_rate_hz, ended_at, endpoint_ms,
            end_of_turn_probability, speculative, end, tools=self.config.tools), span)

    def text_turn(self, turn_id: str, text: str, span: trace.Span = trace.INVALID_SPAN) -> Reply:
        """A typed turn, answered from now."""
        return self._turn(ReplyRequest(
            turn_id, self.session_id, None, self.memory.history(), self.config.instructions, self.config.voice,
            self.config.speed, self.config.output_rate_hz, time.monotonic(), 0.0, text=text,
            tools=self.config.tools), span)

    def _turn(self, request: ReplyRequest, span: trace.Span) -> Reply:
        playout = Playout(self.config.output_rate_hz, self.settings.reply_lead_ms, self.settings.reply_piece_ms,
                          held=request.speculative)
        return Reply(request, playout, self._tasks, self._answer, self._transcribe, self.metrics, span)

    async def _answer(self, turn: Reply) -> None:
        with bound(session_id=self.session_id, turn_id=turn.turn_id):
            error: StageError | ToolError | None = None
            try:
                await self.runner.run(turn.request, turn.progress, on_voxtral_free=turn.voxtral_free)
            except (StageError, ToolError) as err:
                error = err
            finally:
                # The reply is over (however): the user's words may be asked for, and speech that
                # starts from now on interrupts nothing.
                turn.voxtral_free()
                self.ended_calls.extend(c.call_id for t in turn.progress.tools.turns for c in t.tool_calls)
                if self.answering is turn:
                    self.answering = None
            await turn.confirmed.wait()  # a speculative reply's failure counts once it is confirmed
            if isinstance(error, ToolError):
                if turn.end(TurnOutcome.FAILED, error.reason):
                    await self.emit(ErrorEvent(error.code, error.reason, True, turn.turn_id))
                    await self._remember(turn)
            elif error is not None:
                if turn.end(TurnOutcome.FAILED, f"{error.stage} failed: {error.code}: {error.message}"):
                    await self.error(error, turn.turn_id)
                    await self._remember(turn)
            elif turn.end(TurnOutcome.COMPLETED):
                await self._remember(turn)

    def playing(self, turn_id: str) -> Reply | None:
        """The reply a playback report names: the one in progress, or the last one stopped."""
        for turn in (self.answering, self.stopped):
            if turn is not None and turn.turn_id == turn_id:
                return turn
        return None

    def tool_result(self, call_id: str, output: str) -> str:
        """The client's result for a call of the reply in progress: "" when it is taken, else why not
        (a result for a call of a reply already stopped is dropped quietly: the client could not know)."""
        turn = self.answering
        if turn is not None and turn.progress.tools.answer(call_id, output):
            return ""
        if call_id in self.ended_calls or (turn is not None and turn.progress.tools.knows(call_id)):
            log.info("a tool result for a reply that has ended or has it already; dropped",
                     extra={"call_id": call_id})
            return ""
        return f"tool_result.call_id {echo(call_id)} names no call that a reply is waiting for"

    async def report(self, turn_id: str, played_ms: float) -> None:
        """The client's playback position of a reply; of one stopped and kept, the kept part follows it."""
        turn = self.playing(turn_id)
        if turn is None:
            return
        turn.playout.report(played_ms)
        if turn is self.stopped:  # revises its exchange once kept (before that, _keep reads the new position)
            await self.memory.revise(turn_id, turn.progress.heard_text, turn.progress.cut_off)

    async def stop(self, reason: StopReason = StopReason.SPEECH) -> None:
        turn = self.answering
        if turn is None or turn.task.done() or not turn.end(TurnOutcome.INTERRUPTED, reason):
            return
        self.answering = None
        # A playback report from now on names this reply (a Realtime client truncates as speech starts).
        self.stopped = turn
        turn.playout.pause()  # what is heard stops here, whatever the client still had queued
        await turn.stop()
        await self.emit(Interrupted(turn.turn_id, turn.progress.heard_text, turn.playout.heard_ms()))
        self._tasks.spawn(self._remember(turn))

    async def _transcribe(self, request: ReplyRequest) -> str | None:
        """The user's words; None when they cannot be known (the exchange is kept, marked so)."""
        if request.utterance is None:
            return request.text  # typed
        try:
            with tracing.span("voxtral.transcribe"):
                return await self.stages.transcribe(request.utterance, self.session_id, request.turn_id)
        except StageError as err:
            self.metrics.transcriptions_lost.labels(code=err.code).inc()
            log.warning("transcription failed; the exchange is kept with the user's words marked unknown",
                        extra={"turn_id": request.turn_id, "error": str(err)})
            return None

    async def _remember(self, turn: Reply) -> None:
        """Keep the exchange (what the listener heard, marked when cut off) and the turn's record;
        then tell the client how the turn ended (one line in the log, too), and end its trace."""
        with trace.use_span(turn.span, end_on_exit=False):
            await self._keep(turn)

    def no_more_input(self) -> None:
        """The client will send nothing more: a reply waiting for a tool's result stops waiting."""
        if self.answering is not None:
            self.answering.progress.tools.abandon("the client ended its input before tool "
                                                  f"{self.answering.progress.tools.waiting_names()} gave its result")

    async def _keep(self, turn: Reply) -> None:
        outcome = turn.outcome or TurnOutcome.FAILED
        words = (await asyncio.gather(turn.transcript, return_exceptions=True))[0]
        user = words if isinstance(words, str) else None
        spoken, cut_off = turn.progress.heard_text, turn.progress.cut_off
        await self.memory.remember(turn.turn_id, user, spoken, cut_off, answered(turn.progress.tools.turns))
        if turn.progress.heard_text != spoken:  # a playback report came while it was written
            await self.memory.revise(turn.turn_id, turn.progress.heard_text, turn.progress.cut_off)
        metrics = dict(turn.progress.metrics)
        plain = by_name(metrics)  # for the store, the log and the trace
        details: dict[str, object] = {"outcome": outcome.value, "reason": turn.reason, "cut_off": cut_off,
                                      "speculation": Speculation.USED.value if turn.request.speculative else "none",
                                      "typed": turn.request.utterance is None}
        if turn.request.end_of_turn_probability is not None:
            details["end_of_turn_probability"] = round(turn.request.end_of_turn_probability, 4)
        if Metric.E2E in metrics:
            await self.memory.record(turn.turn_id, plain, details)
        log.log(logging.WARNING if outcome is TurnOutcome.FAILED else logging.INFO, "turn %s", outcome.value,
                extra={"turn_id": turn.turn_id, **details, **plain})
        if outcome is TurnOutcome.COMPLETED:
            await self.emit(TurnCompleted(turn.turn_id, user or "", spoken, metrics, turn.request.speculative))
        tracing.end(turn.span, outcome=outcome.value, reason=turn.reason, cut_off=cut_off, **plain)
        await self.emit(TurnEnded(turn.turn_id, outcome, user or "", user is not None, spoken, cut_off, turn.reason,
                                  metrics))

    async def error(self, err: StageError, turn_id: str) -> None:
        await self.emit(ErrorEvent(err.code.client, f"{err.stage} failed: {err.message}", True,
                                   turn_id))
