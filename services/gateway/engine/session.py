"""One conversation: audio in, VAD events, turns, barge-in, controls. Its parts are the VAD link,
the turn runner and the memory; this module only decides what happens when."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from services.common.audio import resample
from services.common.limits import VOXTRAL_SAMPLE_RATE_HZ
from services.common.logs import bound
from services.common.store import SessionStore
from services.gateway.config import GatewaySettings
from services.gateway.engine.events import (
    ErrorEvent,
    Event,
    Interrupted,
    SessionStarted,
    SpeechEnded,
    SpeechStarted,
    TurnCompleted,
)
from services.gateway.engine.inputs import SessionConfig
from services.gateway.engine.memory import Memory
from services.gateway.engine.runner import SynthesisPace, TurnRequest, TurnRunner
from services.gateway.engine.stages import StageError, Stages, VadEvent
from services.gateway.engine.tasks import TaskSet
from services.gateway.engine.timeline import InputTimeline
from services.gateway.engine.turn import Listening, Turn
from services.gateway.engine.vad_link import VadLink
from services.gateway.engine.vocabulary import ErrorCode, TurnOutcome, VadEventKind
from services.gateway.metrics import END_OF_TURN_PROBABILITY, TURNS

log = logging.getLogger(__name__)


def new_id() -> str:
    """A random 128-bit identifier."""
    return secrets.token_hex(16)


class ConversationSession:
    def __init__(self, settings: GatewaySettings, stages: Stages, store: SessionStore, config: SessionConfig,
                 emit: Callable[[Event], Awaitable[None]], pace: SynthesisPace | None = None) -> None:
        self.settings = settings
        self.stages = stages
        self.config = config
        self.emit = emit
        self.session_id = config.resume_id or new_id()
        self.timeline = InputTimeline(config.input_rate_hz, settings.buffer_s)
        self.memory = Memory(settings, store, self.session_id)
        self.runner = TurnRunner(settings, stages, emit, pace)
        self.vad = VadLink(settings, stages, config.input_rate_hz, config.end_silence_ms, self.session_id,
                           self._on_vad, self._on_vad_outage)
        self._listening: Listening | None = None  # speech started, not ended yet
        self._answering: Turn | None = None  # the reply in progress
        self._tasks = TaskSet()  # turns, transcriptions and what is remembered of them

    async def start(self) -> SessionStarted:
        resumed = bool(self.config.resume_id)
        await self.memory.open(resume=resumed)
        log.info("session started", extra={"session_id": self.session_id, "resumed": resumed})
        return SessionStarted(self.session_id, resumed, len(self.memory.context))

    async def listen(self) -> None:
        """Start feeding the VAD (after the client has its session_started event)."""
        await self.vad.open()

    # --- input -------------------------------------------------------------------------------

    def audio(self, data: bytes) -> None:
        start = self.timeline.total
        pcm = self.timeline.append(data, time.monotonic())
        if pcm:
            self.vad.feed(start, pcm)

    async def interrupt(self) -> None:
        await self._stop_answer()

    async def reset_context(self) -> None:
        await self.memory.reset()

    async def end_of_input(self) -> None:
        """No more audio: let the VAD close the utterance in progress and wait for its reply."""
        await self.vad.finish()
        await self.finish_turn()

    async def finish_turn(self) -> None:
        """Wait for the reply in progress and everything it leaves to do (transcript, memory)."""
        await self._tasks.drain()

    async def close(self) -> None:
        """The client is gone or done: stop all downstream work, leaving no task behind."""
        await self.vad.close()
        await self._tasks.cancel()

    # --- VAD -----------------------------------------------------------------------------------

    async def _on_vad(self, event: VadEvent) -> None:
        if event.kind is VadEventKind.STARTED:
            await self._stop_answer()  # barge-in: the user talks over the reply
            self._listening = Listening(new_id(), event.start_sample)
            await self.emit(SpeechStarted(self._listening.turn_id, event.start_sample))
        elif event.kind is VadEventKind.ENDED and self._listening is not None:
            received = time.monotonic()
            listening, self._listening = self._listening, None
            voiced_end_at = self.timeline.arrival_of(event.end_sample - 1)  # when the last voiced sample came in
            endpoint_ms = max(0.0, (received - voiced_end_at) * 1000) if voiced_end_at else 0.0
            if event.probability is not None:
                END_OF_TURN_PROBABILITY.observe(event.probability)
            await self.emit(SpeechEnded(listening.turn_id, event.start_sample, event.end_sample, event.probability))
            self._begin_answer(listening.turn_id, event.start_sample, event.end_sample, received, endpoint_ms,
                               event.probability)

    async def _on_vad_outage(self, err: StageError) -> None:
        self._listening = None
        await self._error(err, turn_id="")

    # --- turns ---------------------------------------------------------------------------------

    def _begin_answer(self, turn_id: str, start: int, end: int, ended_at: float, endpoint_ms: float,
                      end_of_turn_probability: float | None) -> None:
        max_samples = int(self.settings.max_utterance_s * self.config.input_rate_hz)
        pcm = self.timeline.cut(max(start, end - max_samples), end)
        utterance = resample(pcm, self.config.input_rate_hz, VOXTRAL_SAMPLE_RATE_HZ)
        request = TurnRequest(turn_id, self.session_id, utterance, self.memory.history(), self.config.instructions,
                              self.config.voice, self.config.speed, self.config.output_rate_hz, ended_at,
                              endpoint_ms, end_of_turn_probability)
        self._answering = Turn(request, self._tasks, self._answer, self._transcribe)

    async def _answer(self, turn: Turn) -> None:
        with bound(session_id=self.session_id, turn_id=turn.turn_id):
            error: StageError | None = None
            try:
                await self.runner.run(turn.request, turn.progress, on_voxtral_free=turn.voxtral_free)
            except StageError as err:
                error = err
            finally:
                # The reply is over (however): the user's words may be asked for, and speech that
                # starts from now on interrupts nothing.
                turn.voxtral_free()
                if self._answering is turn:
                    self._answering = None
            if error is not None:
                TURNS.labels(outcome=TurnOutcome.FAILED).inc()
                await self._error(error, turn.turn_id)
                await self._remember(turn, TurnOutcome.FAILED)
            else:
                TURNS.labels(outcome=TurnOutcome.COMPLETED).inc()
                await self._remember(turn, TurnOutcome.COMPLETED)

    async def _stop_answer(self) -> None:
        turn = self._answering
        if turn is None or turn.task.done():
            return
        self._answering = None
        await turn.stop()
        TURNS.labels(outcome=TurnOutcome.INTERRUPTED).inc()
        await self.emit(Interrupted(turn.turn_id, turn.progress.spoken_text))
        self._tasks.spawn(self._remember(turn, TurnOutcome.INTERRUPTED))

    async def _transcribe(self, request: TurnRequest) -> str:
        try:
            return await self.stages.transcribe(request.utterance, self.session_id, request.turn_id)
        except StageError as err:
            log.warning("transcription failed; the exchange keeps no user words",
                        extra={"turn_id": request.turn_id, "error": str(err)})
            return ""

    async def _remember(self, turn: Turn, outcome: TurnOutcome) -> None:
        """Keep the exchange (what the assistant really said); a completed turn also its metrics."""
        words = (await asyncio.gather(turn.transcript, return_exceptions=True))[0]
        user = words if isinstance(words, str) else ""
        spoken = turn.progress.spoken_text
        await self.memory.remember(turn.turn_id, user, spoken)
        if outcome is not TurnOutcome.COMPLETED:
            return
        metrics = dict(turn.progress.metrics)
        if "e2e_ms" in metrics:
            await self.memory.record(turn.turn_id, metrics, turn.request.end_of_turn_probability)
        await self.emit(TurnCompleted(turn.turn_id, user, spoken, metrics))

    async def _error(self, err: StageError, turn_id: str) -> None:
        await self.emit(ErrorEvent(ErrorCode.of_status(err.code), f"{err.stage} failed: {err.message}", True,
                                   turn_id))
