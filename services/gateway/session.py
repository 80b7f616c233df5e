"""One conversation: audio in, VAD events, turns, barge-in, controls, context. Plain asyncio;
the gRPC surface (server.py) only feeds it requests and writes out the events it emits."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.common.audio import resample
from services.common.errors import InvalidArgument
from services.common.logs import bound
from services.common.store import Exchange, SessionStore
from services.gateway.config import GatewaySettings
from services.gateway.events import (
    ErrorEvent,
    Event,
    Interrupted,
    SessionStarted,
    SpeechEnded,
    SpeechStarted,
    TurnCompleted,
)
from services.gateway.metrics import TURNS, observe_turn
from services.gateway.stages import HistoryTurn, StageError, Stages, VadEvent, VadStream
from services.gateway.timeline import InputTimeline
from services.gateway.turn import TurnProgress, TurnRequest, TurnRunner

log = logging.getLogger(__name__)
ERROR_CODES = {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "UNAVAILABLE"}
# After a VAD failure, the stream is opened again at most this often.
VAD_RETRY_S = 0.5
# Audio waiting for the VAD (20 ms messages: about 10 s); beyond it the oldest is dropped.
VAD_QUEUE = 500


@dataclass(frozen=True)
class SessionConfig:
    input_rate_hz: int
    output_rate_hz: int
    voice: str
    speed: float | None
    end_silence_ms: int
    instructions: str
    resume_id: str


def new_id() -> str:
    """A random 128-bit identifier."""
    return secrets.token_hex(16)


@dataclass
class _Turn:
    turn_id: str
    task: asyncio.Task[None] | None = None
    progress: TurnProgress | None = None
    transcript: asyncio.Task[str] | None = None
    request: TurnRequest | None = None


class ConversationSession:
    def __init__(self, settings: GatewaySettings, stages: Stages, store: SessionStore, config: SessionConfig,
                 emit: Callable[[Event], Awaitable[None]]) -> None:
        self.settings = settings
        self.stages = stages
        self.store = store
        self.config = config
        self.emit = emit
        self.session_id = config.resume_id or new_id()
        self.timeline = InputTimeline(config.input_rate_hz, settings.buffer_s)
        self.context: list[Exchange] = []
        self.runner = TurnRunner(settings, stages, emit)
        self._vad: VadStream | None = None
        self._vad_reader: asyncio.Task[None] | None = None
        self._vad_failed_at = 0.0
        self._vad_outage = False  # an error event was sent for the current VAD outage
        # (input offset of the first sample, PCM): the VAD is fed by its own task, so a slow or
        # dead VAD never blocks the session's reading of the client.
        self._vad_queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(maxsize=VAD_QUEUE)
        self._vad_writer: asyncio.Task[None] | None = None
        self._listening: _Turn | None = None  # speech started, not ended yet
        self._answering: _Turn | None = None  # the reply in progress
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> SessionStarted:
        resumed = False
        if self.config.resume_id:
            known = await self.store.session_exists(self.config.resume_id)
            if known is False:
                raise InvalidArgument(f"session {self.config.resume_id!r} is unknown or has expired: "
                                      "leave session_id empty to start a new one")
            self.context = await self.store.context(self.session_id)
            resumed = True
        await self.store.open_session(self.session_id)
        log.info("session started", extra={"session_id": self.session_id, "resumed": resumed})
        return SessionStarted(self.session_id, resumed, len(self.context))

    async def listen(self) -> None:
        """Start feeding the VAD (after the client has its session_started event)."""
        await self._open_vad(0)
        self._vad_writer = asyncio.create_task(self._write_vad())

    # --- input -------------------------------------------------------------------------------

    async def audio(self, data: bytes) -> None:
        start = self.timeline.total
        pcm = self.timeline.append(data, time.monotonic())
        if not pcm:
            return
        if self._vad_queue.full():
            self._vad_queue.get_nowait()
            self._vad_queue.task_done()
            log.warning("the VAD is behind; dropped 1 audio message", extra={"session_id": self.session_id})
        self._vad_queue.put_nowait((start, pcm))

    async def interrupt(self) -> None:
        await self._stop_answer()

    async def reset_context(self) -> None:
        self.context = []
        await self.store.reset_context(self.session_id)

    async def end_of_input(self) -> None:
        """No more audio: let the VAD close the utterance in progress and wait for its reply."""
        await self._vad_queue.join()
        if self._vad is not None:
            await self._vad.finish()
        if self._vad_reader is not None:
            await asyncio.gather(self._vad_reader, return_exceptions=True)
        await self.finish_turn()

    async def finish_turn(self) -> None:
        """Wait for the reply in progress (and its bookkeeping) to complete."""
        if self._answering is not None and self._answering.task is not None:
            await asyncio.gather(self._answering.task, return_exceptions=True)
        await self._drain_background()

    async def close(self) -> None:
        """The client is gone or done: stop all downstream work."""
        if self._vad is not None:
            self._vad.cancel()
        answer = self._answering.task if self._answering else None
        tasks = [t for t in (self._vad_writer, self._vad_reader, answer) if t]
        for task in [*tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)

    # --- VAD -----------------------------------------------------------------------------------

    async def _write_vad(self) -> None:
        while True:
            start, pcm = await self._vad_queue.get()
            try:
                if self._vad is None and time.monotonic() - self._vad_failed_at >= VAD_RETRY_S:
                    await self._open_vad(start)
                stream = self._vad
                if stream is None:
                    continue  # the VAD is down: this audio cannot be heard
                try:
                    async with asyncio.timeout(self.settings.vad_timeout_s):
                        await stream.send(pcm)
                except TimeoutError:
                    await self._vad_lost(StageError("vad", "DEADLINE_EXCEEDED", "the VAD stopped taking audio"))
                except StageError as err:
                    await self._vad_lost(err)
            except Exception as exc:  # noqa: BLE001 (the writer must outlive any one failure)
                log.exception("VAD writer failed", extra={"session_id": self.session_id})
                await self._vad_lost(StageError("vad", "INTERNAL", repr(exc)))
            finally:
                self._vad_queue.task_done()

    async def _open_vad(self, base: int) -> None:
        """A new VAD stream whose sample 0 is input sample `base`."""
        try:
            self._vad = await self.stages.open_vad(self.config.input_rate_hz, self.config.end_silence_ms)
        except StageError as err:
            await self._vad_lost(err)
            return
        if self._vad_outage:
            log.info("VAD stream open again", extra={"session_id": self.session_id})
        self._vad_outage = False
        self._vad_reader = asyncio.create_task(self._read_vad(self._vad, base))

    async def _vad_lost(self, err: StageError) -> None:
        if self._vad is not None:
            self._vad.cancel()
        self._vad = None
        self._listening = None
        self._vad_failed_at = time.monotonic()
        log.warning("VAD stream lost", extra={"session_id": self.session_id, "error": str(err)})
        if not self._vad_outage:  # one error event per outage, however often the reopening fails
            self._vad_outage = True
            await self._error(err, turn_id="")

    async def _read_vad(self, stream: VadStream, base: int) -> None:
        try:
            async for event in stream.events():
                await self._on_vad(event, base)
        except StageError as err:
            if stream is self._vad:
                await self._vad_lost(err)

    async def _on_vad(self, event: VadEvent, base: int) -> None:
        start, end = base + event.start_sample, base + event.end_sample
        if event.kind == "started":
            await self._stop_answer()  # barge-in: the user talks over the reply
            self._listening = _Turn(new_id())
            await self.emit(SpeechStarted(self._listening.turn_id, start))
        elif event.kind == "ended" and self._listening is not None:
            received = time.monotonic()
            turn, self._listening = self._listening, None
            voiced_end_at = self.timeline.arrival_of(end - 1)  # when the last voiced sample came in
            endpoint_ms = max(0.0, (received - voiced_end_at) * 1000) if voiced_end_at else 0.0
            await self.emit(SpeechEnded(turn.turn_id, start, end))
            self._begin_answer(turn, start, end, received, endpoint_ms)

    # --- turns ---------------------------------------------------------------------------------

    def _begin_answer(self, turn: _Turn, start: int, end: int, ended_at: float, endpoint_ms: float) -> None:
        max_samples = int(self.settings.max_utterance_s * self.config.input_rate_hz)
        pcm = self.timeline.cut(max(start, end - max_samples), end)
        utterance = resample(pcm, self.config.input_rate_hz, 16000)
        history = [HistoryTurn(role, text) for ex in self.context
                   for role, text in (("user", ex.user), ("assistant", ex.assistant))]
        request = TurnRequest(turn.turn_id, self.session_id, utterance, history, self.config.instructions,
                              self.config.voice, self.config.speed, self.config.output_rate_hz, ended_at,
                              endpoint_ms)
        turn.progress = TurnProgress()
        turn.request = request
        turn.task = asyncio.create_task(self._answer(turn, request))
        self._answering = turn

    def _start_transcript(self, turn: _Turn) -> asyncio.Task[str]:
        """The user's words, off the critical path: asked once the reply text is done and its first audio is out."""
        if turn.transcript is None:
            assert turn.request is not None
            turn.transcript = asyncio.create_task(self._transcribe(turn.request))
            self._background.add(turn.transcript)
            turn.transcript.add_done_callback(self._background.discard)
        return turn.transcript

    async def _answer(self, turn: _Turn, request: TurnRequest) -> None:
        assert turn.progress is not None
        with bound(session_id=self.session_id, turn_id=turn.turn_id):
            try:
                await self.runner.run(request, turn.progress, on_voxtral_free=lambda: self._start_transcript(turn))
            except StageError as err:
                TURNS.labels(outcome="failed").inc()
                await self._error(err, turn.turn_id)
                await self._remember(turn, turn.progress.spoken_text, record=False)
                return
            finally:
                if self._answering is turn:
                    self._answering = None
            TURNS.labels(outcome="completed").inc()
            await self._remember(turn, turn.progress.spoken_text, record=True)

    async def _stop_answer(self) -> None:
        turn = self._answering
        if turn is None or turn.task is None or turn.task.done():
            return
        self._answering = None
        turn.task.cancel()
        await asyncio.gather(turn.task, return_exceptions=True)
        assert turn.progress is not None
        spoken = turn.progress.spoken_text
        TURNS.labels(outcome="interrupted").inc()
        await self.emit(Interrupted(turn.turn_id, spoken))
        task = asyncio.create_task(self._remember(turn, spoken, record=False))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _transcribe(self, request: TurnRequest) -> str:
        try:
            return await self.stages.transcribe(request.utterance, self.session_id, request.turn_id)
        except StageError as err:
            log.warning("transcription failed; the exchange keeps no user words",
                        extra={"turn_id": request.turn_id, "error": str(err)})
            return ""

    async def _remember(self, turn: _Turn, spoken: str, *, record: bool) -> None:
        """Store the exchange (what the assistant really said) and, for a finished turn, its metrics."""
        user = (await asyncio.gather(self._start_transcript(turn), return_exceptions=True))[0]
        user = user if isinstance(user, str) else ""
        assert turn.progress is not None
        metrics = dict(turn.progress.metrics)
        exchange = Exchange(user=user, assistant=spoken, turn_id=turn.turn_id, at=time.time())
        self.context = [*self.context, exchange][-self.settings.redis.context_exchanges:]
        await self.store.append_exchange(self.session_id, exchange)
        if record and "e2e_ms" in metrics:
            await self.store.record_turn(self.session_id, turn.turn_id, metrics)
            observe_turn(metrics)
            log.info("turn completed", extra={"turn_id": turn.turn_id, **metrics})
        if record:
            await self.emit(TurnCompleted(turn.turn_id, user, spoken, metrics))

    async def _drain_background(self) -> None:
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _error(self, err: StageError, turn_id: str) -> None:
        code = err.code if err.code in ERROR_CODES else "UNAVAILABLE" if err.code == "CANCELLED" else "INTERNAL"
        await self.emit(ErrorEvent(code, f"{err.stage} failed: {err.message}", True, turn_id))
