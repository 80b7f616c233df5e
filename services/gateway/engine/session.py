"""One conversation: audio in, VAD events, turns, barge-in, controls. Its parts are the VAD link,
the replies, the judge of speech over a reply and the memory; this module only decides what
happens when."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from services.common import tracing
from services.common.errors import Status
from services.gateway.config import GatewaySettings
from services.gateway.engine.barge_in import BargeIn, Listening
from services.gateway.engine.budget import AudioBudget, AudioSpeedLimit, ByteBudget
from services.gateway.engine.events import ErrorEvent, Event, SessionStarted, SpeechEnded, SpeechStarted, TextTurn
from services.gateway.engine.inputs import PlaybackReport, SessionConfig, ToolResult
from services.gateway.engine.memory import Memory
from services.gateway.engine.pace import SynthesisPace
from services.gateway.engine.replies import Replies
from services.gateway.engine.stages import StageError, Stages, VadEvent
from services.gateway.engine.store import Store
from services.gateway.engine.tasks import TaskSet
from services.gateway.engine.timeline import InputTimeline
from services.gateway.engine.traces import SessionTrace
from services.gateway.engine.vad_link import VadLink
from services.gateway.engine.vocabulary import BargeInMode, StopReason, VadEventKind
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)
# The least audio a manual commit takes as a turn.
MIN_COMMIT_MS = 100


def new_id() -> str:
    """A random 128-bit identifier."""
    return secrets.token_hex(16)


class ConversationSession:
    def __init__(self, settings: GatewaySettings, stages: Stages, store: Store, config: SessionConfig,
                 emit: Callable[[Event], Awaitable[None]], metrics: GatewayMetrics, pace: SynthesisPace | None = None,
                 audio_budget: ByteBudget | None = None, owner: str = "open") -> None:
        self.settings = settings
        self.metrics = metrics
        self.stages = stages
        self.config = config
        self.emit = emit
        self.session_id = config.resume_id or new_id()
        self.timeline = InputTimeline(config.input_rate_hz, settings.buffer_s)
        self.memory = Memory(settings, store, self.session_id, owner, metrics)
        budget = AudioBudget(ByteBudget(settings.session_audio_bytes, "session"),
                             audio_budget or ByteBudget(settings.process_audio_bytes, "process"), self.session_id,
                             metrics)
        self.speed_limit = AudioSpeedLimit(config.input_rate_hz, settings.max_audio_speed, settings.audio_burst_s,
                                           budget)
        self.vad = VadLink(settings, stages, config.input_rate_hz, config.end_silence_ms, self.session_id,
                           self._on_vad, self._on_vad_outage, budget, config.end_of_turn_fallback_ms,
                           config.end_of_turn_detector)
        self._listening: Listening | None = None  # speech started, not ended yet
        self.trace = SessionTrace(self.session_id)
        self.spoke_at: float | None = None  # when speech last started (a session that never speaks loads nothing)
        self._lease: asyncio.Task[None] | None = None
        self._committed = 0  # manual turns: the input sample the next commit starts at
        self._tasks = TaskSet()  # turns, transcriptions and what is remembered of them
        self.replies = Replies(settings, stages, config, self.session_id, self.memory, self.timeline, emit,
                               self._tasks, metrics, pace)
        self.barge_in = BargeIn(settings, stages, self.session_id, emit, self._tasks, self.replies.utterance,
                                self.timeline.level_dbfs,
                                lambda: self.replies.answering, lambda: self._listening, self.replies.stop, metrics)

    async def start(self) -> SessionStarted:
        resumed = bool(self.config.resume_id)
        self.trace.open(resumed)
        await self.memory.open(resume=resumed)
        self._lease = asyncio.create_task(self.memory.hold())  # not a turn's task: finish_turn does not wait for it
        log.info("session started", extra={"session_id": self.session_id, "resumed": resumed})
        return SessionStarted(self.session_id, resumed, len(self.memory.context))

    async def listen(self) -> None:
        """Start feeding the VAD (after the client has its session_started event); with manual
        turns there is none: the client's commits end its turns."""
        if not self.config.manual_turns:
            await self.vad.open()

    # --- input -------------------------------------------------------------------------------

    async def audio(self, data: bytes) -> None:
        await self.speed_limit.take(len(data) // 2)  # waits while the client is over the audio speed limit
        start = self.timeline.total
        pcm = self.timeline.append(data, time.monotonic())
        if pcm and not self.config.manual_turns:
            await self.vad.feed(start, pcm)

    async def commit(self) -> None:
        """Manual turns: the audio since the last commit is the user's turn, answered now (a reply
        still running is cancelled: the client has moved on)."""
        if not self.config.manual_turns:
            await self.emit(ErrorEvent(Status.INVALID_ARGUMENT, "commit is for sessions with manual turns: "
                                       "the VAD ends turns in this one"))
            return
        start, end = self._committed, self.timeline.total
        got_ms = (end - start) * 1000 // self.config.input_rate_hz
        if got_ms < MIN_COMMIT_MS:
            await self.emit(ErrorEvent(Status.INVALID_ARGUMENT, f"nothing to commit: {MIN_COMMIT_MS} ms of "
                                       f"audio at least since the last commit (got {got_ms} ms)"))
            return
        self._committed = end
        await self.replies.stop(StopReason.NEW_TURN)
        await self._speech_started(VadEvent(VadEventKind.STARTED, start, start))
        await self._speech_ended(VadEvent(VadEventKind.ENDED, start, end, voiced_ms=float(got_ms)))

    async def say(self, text: str) -> None:
        """A typed turn: answered now, as the user's next turn (a reply still running is cut short)."""
        await self.replies.drop_speculation()
        await self.replies.stop(StopReason.NEW_TURN)
        turn_id = new_id()
        await self.emit(TextTurn(turn_id, text))
        self.spoke_at = time.monotonic()
        self.replies.answering = self.replies.text_turn(turn_id, text, self.trace.turn(turn_id, typed=True))

    def clear_audio(self) -> None:
        """Manual turns: the audio since the last commit is dropped."""
        self._committed = self.timeline.total

    def update(self, config: SessionConfig) -> None:
        """Later replies use this config (voice, speed, instructions)."""
        self.config = self.replies.config = config

    async def interrupt(self) -> None:
        await self.replies.stop(StopReason.CLIENT)

    def tool_result(self, result: ToolResult) -> str:
        """A client tool's result for the reply waiting on it: "" when taken, else why not."""
        return self.replies.tool_result(result.call_id, result.output)

    async def playback(self, report: PlaybackReport) -> None:
        """The client's playback position of a reply: the truth about what was heard."""
        await self.replies.report(report.turn_id, report.played_ms)

    async def reset_context(self) -> None:
        await self.memory.reset()

    async def end_of_input(self) -> None:
        """No more audio: let the VAD close the utterance in progress and wait for its reply."""
        self.replies.no_more_input()
        await self.vad.finish()
        await self.finish_turn()

    async def finish_turn(self) -> None:
        """Wait for the reply in progress and everything it leaves to do (transcript, memory); a turn
        whose end the client has been told of but whose reply is still being set up counts."""
        await self.vad.settled()
        await self._tasks.drain()

    async def close(self) -> None:
        """The client is gone or done: stop all downstream work, leaving no task behind."""
        self.trace.close(*(t.span for t in (self.replies.answering, self.replies.speculating, self._listening) if t))
        self.replies.speculating = None
        await self.vad.close()
        await self._tasks.cancel()
        if self._lease is not None:
            self._lease.cancel()
            await asyncio.gather(self._lease, return_exceptions=True)
        await self.memory.release()

    # --- VAD -----------------------------------------------------------------------------------

    async def _on_vad(self, event: VadEvent) -> None:
        match event.kind:
            case VadEventKind.STARTED:
                self.spoke_at = time.monotonic()
                await self._speech_started(event)
            case VadEventKind.PAUSED:
                await self._speech_paused(event)
            case VadEventKind.RESUMED:
                await self._speech_resumed()
            case VadEventKind.ENDED:
                await self._speech_ended(event)

    async def _speech_started(self, event: VadEvent) -> None:
        await self.replies.drop_speculation()
        turn_id = new_id()
        listening = Listening(turn_id, event.start_sample, self.trace.turn(turn_id))
        self._listening = listening
        if not self.config.manual_turns:
            self.vad.trace(tracing.carrier(listening.span))  # the VAD's spans for this utterance join its trace
        turn = self.replies.answering
        turn = turn if turn is not None and not turn.task.done() else None  # the reply still playing
        if turn is not None and self.config.barge_in is BargeInMode.PAUSE:
            await self.barge_in.pause(listening, turn)
        if turn is not None and self.config.barge_in is BargeInMode.CANCEL:
            turn.playout.pause()  # not one piece more after speech_started: the reply ends there
        await self.emit(SpeechStarted(listening.turn_id, event.start_sample))
        if turn is not None and self.config.barge_in is BargeInMode.CANCEL:
            await self.replies.stop()  # barge-in: the user talks over the reply (said after speech_started)

    async def _speech_paused(self, event: VadEvent) -> None:
        listening = self._listening
        if listening is None:
            return
        if listening.over is not None:
            await self.barge_in.judge(listening, event)
        elif self.replies.answering is None and self.replies.speculating is None:
            self.replies.speculate(listening, event)

    async def _speech_resumed(self) -> None:
        await self.replies.drop_speculation()  # the user goes on
        listening = self._listening
        if listening is None or listening.over is None or not listening.dismissed:
            return
        turn = listening.over
        if self.replies.answering is turn and not turn.task.done():
            await self.barge_in.pause(listening, turn)  # more than a backchannel, perhaps: judged again
        else:
            listening.over, listening.dismissed = None, False  # the reply is over: this is a new turn

    async def _speech_ended(self, event: VadEvent) -> None:
        listening = self._listening
        if listening is None:
            return
        received = time.monotonic()
        self._listening = None
        voiced_end_at = self.timeline.arrival_of(event.end_sample - 1)  # when the last voiced sample came in
        endpoint_ms = max(0.0, (received - voiced_end_at) * 1000) if voiced_end_at else 0.0
        if event.probability is not None:
            self.metrics.end_of_turn_probability.observe(event.probability)
        await self.emit(SpeechEnded(listening.turn_id, event.start_sample, event.end_sample, event.probability))
        if voiced_end_at:
            tracing.record("end_of_turn_wait", listening.span, voiced_end_at, received, endpoint_ms=endpoint_ms,
                           end_of_turn_probability=event.probability)
        if listening.over is not None:
            await self.barge_in.judge(listening, event)
            listening.stop_timer()
            if listening.dismissed:
                tracing.end(listening.span, outcome="no_turn")
                return  # a cough or a backchannel over the reply: nothing to answer
        spec, self.replies.speculating = self.replies.speculating, None
        if spec is not None and spec.request.utterance_end == event.end_sample and self.replies.answering is None:
            self.replies.confirm(spec, received, endpoint_ms, event.probability)
            return
        if spec is not None:
            await self.replies.waste(spec)
        await self.replies.stop()  # a reply still playing (barge-in off) gives way to this turn's
        self.replies.answering = self.replies.new_turn(listening.turn_id, event.start_sample, event.end_sample,
                                                       received, endpoint_ms, event.probability,
                                                       span=listening.span)

    async def _on_vad_outage(self, err: StageError) -> None:
        if self._listening is not None:
            self._listening.stop_timer()
            tracing.end(self._listening.span, outcome="vad_lost")
        self._listening = None
        await self.replies.drop_speculation()
        await self.replies.error(err, turn_id="")
