"""One conversation: audio in, VAD events, turns, barge-in, controls. Its parts are the VAD link,
the turn runner and the memory; this module only decides what happens when."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import numpy as np

from services.common.audio import resample
from services.common.limits import VOXTRAL_SAMPLE_RATE_HZ
from services.common.logs import bound
from services.common.store import SessionStore
from services.gateway.config import GatewaySettings
from services.gateway.engine.events import (
    ErrorEvent,
    Event,
    Interrupted,
    ReplyPaused,
    ReplyResumed,
    SessionStarted,
    SpeechEnded,
    SpeechStarted,
    TurnCompleted,
)
from services.gateway.engine.inputs import PlaybackReport, SessionConfig
from services.gateway.engine.memory import Memory
from services.gateway.engine.playout import Playout
from services.gateway.engine.runner import SynthesisPace, TurnRequest, TurnRunner
from services.gateway.engine.stages import StageError, Stages, VadEvent
from services.gateway.engine.tasks import TaskSet
from services.gateway.engine.timeline import InputTimeline
from services.gateway.engine.turn import Listening, Turn, is_backchannel
from services.gateway.engine.vad_link import VadLink
from services.gateway.engine.vocabulary import ErrorCode, Speculation, TurnOutcome, VadEventKind
from services.gateway.metrics import BARGE_INS, END_OF_TURN_PROBABILITY, SPECULATIONS, TURNS

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
        self._speculating: Turn | None = None  # a reply started on a pause hint, held until speech-ended
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

    def playback(self, report: PlaybackReport) -> None:
        """The client's playback position of a reply: the truth about what was heard."""
        turn = self._answering
        if turn is not None and turn.turn_id == report.turn_id:
            turn.playout.report(report.played_ms)

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
        self._speculating = None
        await self.vad.close()
        await self._tasks.cancel()

    # --- VAD -----------------------------------------------------------------------------------

    async def _on_vad(self, event: VadEvent) -> None:
        match event.kind:
            case VadEventKind.STARTED:
                await self._speech_started(event)
            case VadEventKind.PAUSED:
                await self._speech_paused(event)
            case VadEventKind.RESUMED:
                await self._speech_resumed()
            case VadEventKind.ENDED:
                await self._speech_ended(event)

    async def _speech_started(self, event: VadEvent) -> None:
        await self._drop_speculation()
        listening = Listening(new_id(), event.start_sample)
        self._listening = listening
        turn = self._answering
        if turn is not None and not turn.task.done():
            if self.settings.barge_in_reversible:
                await self._pause(listening, turn)
            else:
                await self._stop_answer()  # barge-in: the user talks over the reply
        await self.emit(SpeechStarted(listening.turn_id, event.start_sample))

    async def _speech_paused(self, event: VadEvent) -> None:
        listening = self._listening
        if listening is None:
            return
        if listening.over is not None:
            await self._judge(listening, event)
        elif self._answering is None and self._speculating is None:
            self._speculate(listening, event)

    async def _speech_resumed(self) -> None:
        await self._drop_speculation()  # the user goes on
        listening = self._listening
        if listening is None or listening.over is None or not listening.dismissed:
            return
        turn = listening.over
        if self._answering is turn and not turn.task.done():
            await self._pause(listening, turn)  # more than a backchannel, perhaps: judged again
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
            END_OF_TURN_PROBABILITY.observe(event.probability)
        await self.emit(SpeechEnded(listening.turn_id, event.start_sample, event.end_sample, event.probability))
        if listening.over is not None:
            await self._judge(listening, event)
            listening.stop_timer()
            if listening.dismissed:
                return  # a cough or a backchannel over the reply: nothing to answer
        spec, self._speculating = self._speculating, None
        if spec is not None and spec.request.utterance_end == event.end_sample and self._answering is None:
            self._confirm(spec, received, endpoint_ms, event.probability)
            return
        if spec is not None:
            await self._waste(spec)
        self._answering = self._new_turn(listening.turn_id, event.start_sample, event.end_sample, received,
                                         endpoint_ms, event.probability)

    async def _on_vad_outage(self, err: StageError) -> None:
        if self._listening is not None:
            self._listening.stop_timer()
        self._listening = None
        await self._drop_speculation()
        await self._error(err, turn_id="")

    # --- talking over a reply ------------------------------------------------------------------

    async def _pause(self, listening: Listening, turn: Turn) -> None:
        """Speech over the reply: its audio stops until the speech is known to be a turn or not."""
        listening.over, listening.dismissed = turn, False
        heard_ms = turn.playout.pause()
        await self.emit(ReplyPaused(turn.turn_id, heard_ms))
        listening.stop_timer()
        listening.timer = self._tasks.spawn(self._judge_by_time(listening))

    async def _judge_by_time(self, listening: Listening) -> None:
        await asyncio.sleep(self.settings.barge_in_timeout_ms / 1000)
        listening.timer = None
        if self._listening is listening and listening.over is not None and not listening.dismissed:
            await self._take_turn(listening)  # still talking: that is a turn

    async def _judge(self, listening: Listening, event: VadEvent) -> None:
        """The speech over a reply has paused or ended: a turn (the reply is cancelled) or not (it
        resumes where the listener stopped hearing it)."""
        turn = listening.over
        if turn is None or listening.dismissed:
            return
        listening.stop_timer()
        if await self._is_turn(listening, event):
            await self._take_turn(listening)
            return
        listening.dismissed = True
        BARGE_INS.labels(result="resumed").inc()
        if self._answering is turn and not turn.task.done():
            await self.emit(ReplyResumed(turn.turn_id, turn.playout.resume()))

    async def _is_turn(self, listening: Listening, event: VadEvent) -> bool:
        if event.voiced_ms < self.settings.barge_in_min_voiced_ms:
            return False
        utterance = self._utterance(listening.start_sample, event.end_sample)
        try:
            words = await self.stages.transcribe(utterance, self.session_id, listening.turn_id)
        except StageError as err:
            log.warning("speech over a reply could not be transcribed; taken as a turn", extra={"error": str(err)})
            return True
        return not is_backchannel(words, self.settings.backchannels)

    async def _take_turn(self, listening: Listening) -> None:
        listening.stop_timer()
        turn, listening.over = listening.over, None
        if turn is not None and self._answering is turn:
            BARGE_INS.labels(result="interrupted").inc()
            await self._stop_answer()

    # --- speculation ---------------------------------------------------------------------------

    def _speculate(self, listening: Listening, event: VadEvent) -> None:
        """A pause that may end the turn: start the reply now, its output held until speech-ended."""
        p = event.probability
        if not self.settings.speculate or (p is not None and p < self.settings.speculate_min_probability):
            return
        self._speculating = self._new_turn(listening.turn_id, listening.start_sample, event.end_sample,
                                           time.monotonic(), 0.0, p, speculative=True)
        SPECULATIONS.labels(result=Speculation.STARTED).inc()

    def _confirm(self, turn: Turn, ended_at: float, endpoint_ms: float, probability: float | None) -> None:
        request = turn.request
        request.ended_at, request.endpoint_ms, request.end_of_turn_probability = ended_at, endpoint_ms, probability
        self._answering = turn
        turn.confirm()
        SPECULATIONS.labels(result=Speculation.USED).inc()

    async def _drop_speculation(self) -> None:
        spec, self._speculating = self._speculating, None
        if spec is not None:
            await self._waste(spec)

    async def _waste(self, turn: Turn) -> None:
        await turn.discard()
        SPECULATIONS.labels(result=Speculation.WASTED).inc()

    # --- turns ---------------------------------------------------------------------------------

    def _utterance(self, start: int, end: int) -> np.ndarray:
        """Input samples start..end at Voxtral's rate (the last max_utterance_s of them)."""
        max_samples = int(self.settings.max_utterance_s * self.config.input_rate_hz)
        pcm = self.timeline.cut(max(start, end - max_samples), end)
        return resample(pcm, self.config.input_rate_hz, VOXTRAL_SAMPLE_RATE_HZ)

    def _new_turn(self, turn_id: str, start: int, end: int, ended_at: float, endpoint_ms: float,
                  end_of_turn_probability: float | None, speculative: bool = False) -> Turn:
        request = TurnRequest(turn_id, self.session_id, self._utterance(start, end), self.memory.history(),
                              self.config.instructions, self.config.voice, self.config.speed,
                              self.config.output_rate_hz, ended_at, endpoint_ms, end_of_turn_probability,
                              speculative, end)
        playout = Playout(self.config.output_rate_hz, self.settings.reply_lead_ms, self.settings.reply_piece_ms,
                          held=speculative)
        return Turn(request, playout, self._tasks, self._answer, self._transcribe)

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
            await turn.confirmed.wait()  # a speculative reply's failure counts once it is confirmed
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
        heard_ms = turn.playout.pause()  # what is heard stops here, whatever the client still had queued
        await turn.stop()
        TURNS.labels(outcome=TurnOutcome.INTERRUPTED).inc()
        await self.emit(Interrupted(turn.turn_id, turn.progress.spoken_text, heard_ms))
        self._tasks.spawn(self._remember(turn, TurnOutcome.INTERRUPTED))

    async def _transcribe(self, request: TurnRequest) -> str:
        try:
            return await self.stages.transcribe(request.utterance, self.session_id, request.turn_id)
        except StageError as err:
            log.warning("transcription failed; the exchange keeps no user words",
                        extra={"turn_id": request.turn_id, "error": str(err)})
            return ""

    async def _remember(self, turn: Turn, outcome: TurnOutcome) -> None:
        """Keep the exchange (what the listener heard, marked when cut off) and the turn's record."""
        words = (await asyncio.gather(turn.transcript, return_exceptions=True))[0]
        user = words if isinstance(words, str) else ""
        spoken, cut_off = turn.progress.spoken_text, turn.progress.cut_off
        await self.memory.remember(turn.turn_id, user, spoken, cut_off)
        metrics = dict(turn.progress.metrics)
        if "e2e_ms" in metrics:
            details: dict[str, object] = {"outcome": outcome.value, "cut_off": cut_off,
                                          "speculation": Speculation.USED.value if turn.request.speculative
                                          else "none"}
            if turn.request.end_of_turn_probability is not None:
                details["end_of_turn_probability"] = round(turn.request.end_of_turn_probability, 4)
            await self.memory.record(turn.turn_id, metrics, details)
        if outcome is TurnOutcome.COMPLETED:
            await self.emit(TurnCompleted(turn.turn_id, user, spoken, metrics))

    async def _error(self, err: StageError, turn_id: str) -> None:
        await self.emit(ErrorEvent(ErrorCode.of_status(err.code), f"{err.stage} failed: {err.message}", True,
                                   turn_id))
