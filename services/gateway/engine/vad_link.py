"""A session's link to the VAD: audio fed by its own task (a slow or dead VAD never blocks the
reading of the client), events read by another, the stream opened again after an outage."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from services.gateway.config import GatewaySettings
from services.gateway.engine.budget import AudioBudget
from services.gateway.engine.stages import StageError, Stages, VadEvent, VadStream
from services.gateway.engine.tasks import TaskSet
from services.gateway.engine.vocabulary import Detector, Stage

log = logging.getLogger(__name__)
# After a VAD failure, the stream is opened again at most this often.
VAD_RETRY_S = 0.5


class VadLink:
    """`on_event` gets each event with offsets on the session's input timeline; `on_outage` is
    called once per outage, however often the reopening fails."""

    def __init__(self, settings: GatewaySettings, stages: Stages, sample_rate_hz: int, end_silence_ms: int,
                 session_id: str, on_event: Callable[[VadEvent], Awaitable[None]],
                 on_outage: Callable[[StageError], Awaitable[None]], budget: AudioBudget,
                 fallback_ms: int | None = None, detector: Detector | None = None) -> None:
        self.settings = settings
        self.stages = stages
        self.sample_rate_hz = sample_rate_hz
        self.end_silence_ms = end_silence_ms
        self.fallback_ms = fallback_ms  # the end-of-turn model's fallback for this session (None: the VAD's)
        self.detector = detector  # what ends a turn in this session (None: the VAD's default)
        self.session_id = session_id
        self.on_event = on_event
        self.on_outage = on_outage
        self._stream: VadStream | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failed_at = 0.0
        self._outage = False
        # (input offset of the first sample, PCM), or (-1, a trace carrier for the utterance in progress)
        self._queue: asyncio.Queue[tuple[int, bytes | dict[str, str]]] = asyncio.Queue()  # bytes: `budget`
        self.budget = budget
        self._tasks = TaskSet()
        self._settled = asyncio.Event()  # no VAD event is being handled (a turn is being set up)
        self._settled.set()

    async def open(self) -> None:
        """Open the stream and start feeding it."""
        await self._open(0)
        self._tasks.spawn(self._write())

    async def feed(self, start: int, pcm: bytes) -> None:
        """Queue audio whose first sample is input sample `start`, once the byte budget has room."""
        await self.budget.take(len(pcm))
        self._queue.put_nowait((start, pcm))

    def trace(self, carrier: dict[str, str]) -> None:
        """Tell the VAD, in order with the audio, which trace the utterance in progress belongs to."""
        if carrier:
            self._queue.put_nowait((-1, carrier))

    async def finish(self) -> None:
        """No more audio: everything queued goes out, then the VAD closes the utterance and ends."""
        await self._queue.join()
        if self._stream is not None:
            await self._stream.finish()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def settled(self) -> None:
        """Until the event being handled, if any, has been (the turn it ends has started)."""
        await self._settled.wait()

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
        await self._tasks.cancel()
        while not self._queue.empty():  # audio nobody will send: its bytes go back to the process
            _, pcm = self._queue.get_nowait()
            if isinstance(pcm, bytes):
                self.budget.give(len(pcm))

    async def _write(self) -> None:
        while True:
            start, pcm = await self._queue.get()
            try:
                if isinstance(pcm, dict):
                    if self._stream is not None:
                        with contextlib.suppress(StageError):  # a lost stream is noticed by the audio
                            await self._stream.trace(pcm)
                    continue
                if self._stream is None and time.monotonic() - self._failed_at >= VAD_RETRY_S:
                    await self._open(start)
                stream = self._stream
                if stream is None:
                    continue  # the VAD is down: this audio cannot be heard
                try:
                    async with asyncio.timeout(self.settings.vad_timeout_s):
                        await stream.send(pcm)
                except TimeoutError:
                    await self._lost(StageError(Stage.VAD, "DEADLINE_EXCEEDED", "the VAD stopped taking audio"))
                except StageError as err:
                    await self._lost(err)
            except Exception as exc:
                log.exception("VAD writer failed", extra={"session_id": self.session_id})
                await self._lost(StageError(Stage.VAD, "INTERNAL", repr(exc)))
            finally:
                if isinstance(pcm, bytes):
                    self.budget.give(len(pcm))
                self._queue.task_done()

    async def _open(self, base: int) -> None:
        """A new stream whose sample 0 is input sample `base`."""
        try:
            self._stream = await self.stages.open_vad(self.sample_rate_hz, self.end_silence_ms, self.fallback_ms,
                                                      self.detector)
        except StageError as err:
            await self._lost(err)
            return
        if self._outage:
            log.info("VAD stream open again", extra={"session_id": self.session_id})
        self._outage = False
        self._reader = self._tasks.spawn(self._read(self._stream, base))

    async def _lost(self, err: StageError) -> None:
        if self._stream is not None:
            self._stream.cancel()
        self._stream = None
        self._failed_at = time.monotonic()
        log.warning("VAD stream lost", extra={"session_id": self.session_id, "error": str(err)})
        if not self._outage:
            self._outage = True
            await self.on_outage(err)

    async def _read(self, stream: VadStream, base: int) -> None:
        try:
            async for event in stream.events():
                self._settled.clear()
                try:
                    await self.on_event(dataclasses.replace(event, start_sample=base + event.start_sample,
                                                            end_sample=base + event.end_sample))
                finally:
                    self._settled.set()
        except StageError as err:
            if stream is self._stream:
                await self._lost(err)
