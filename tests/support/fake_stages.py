"""In-memory stages for unit tests of the conversation engine: the Stages protocol with knobs for
what each stage says, how long it takes, when it fails (and with which code) and when it stalls.
Every call is recorded, so a test can see what the engine asked for and what it cancelled.
The end-to-end tests use the real services instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.common.load import StageLoad
from services.common.tools import ToolCall, ToolSpec
from services.gateway.engine.stages import HistoryTurn, ReplyDelta, SpeechChunk, StageError, VadEvent
from services.gateway.engine.vocabulary import Detector, Stage, VadEventKind

SAMPLES_PER_WORD = 240  # the fake TTS's audio: 10 ms at 24 kHz per word


@dataclass
class Call:
    """One stage call: what it was given, and how it ended (done, failed, cancelled or open)."""

    stage: Stage
    what: str
    args: dict[str, object]
    ended: str = "open"


@dataclass
class Knobs:
    delay_s: float = 0.0  # before each piece of output
    fail_code: str = ""  # fail with this status...
    fail_after: int = 0  # ...after this many pieces of output
    stall: asyncio.Event | None = None  # wait for this...
    stall_after: int = 0  # ...before output piece number stall_after (0: before any)


class FakeVadStream:
    """A VAD stream whose events the test scripts: `speech(start, end)`, or `fail(code)`."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.received = 0  # samples sent to this stream
        self.finished = False
        self.cancelled = False
        self._events: asyncio.Queue[VadEvent | StageError | None] = asyncio.Queue()
        self._heard = asyncio.Condition()
        self.taking = asyncio.Event()  # clear it and the stream takes no audio (a VAD that lags)
        self.taking.set()
        self.traces: list[dict[str, str]] = []  # trace carriers sent, in order

    async def send(self, pcm: bytes) -> None:
        await self.taking.wait()
        if self.cancelled:
            raise StageError(Stage.VAD, "UNAVAILABLE", "the VAD stream has ended")
        async with self._heard:
            self.received += len(pcm) // 2
            self._heard.notify_all()

    async def trace(self, carrier: dict[str, str]) -> None:
        self.traces.append(carrier)

    async def finish(self) -> None:
        self.finished = True
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[VadEvent]:
        while (item := await self._events.get()) is not None:
            if isinstance(item, StageError):
                raise item
            yield item

    def cancel(self) -> None:
        self.cancelled = True
        self._events.put_nowait(None)

    async def heard(self, samples: int) -> None:
        """Wait until this stream has been sent at least `samples` samples."""
        async with self._heard:
            await self._heard.wait_for(lambda: self.received >= samples)

    def event(self, kind: VadEventKind, start: int, end: int, probability: float | None = None,
              voiced_ms: float | None = None) -> None:
        """An event; voiced_ms defaults to all of start..end (at the tests' 16 kHz)."""
        voiced = (end - start) / 16 if voiced_ms is None else voiced_ms
        self._events.put_nowait(VadEvent(kind, start, end, probability, voiced))

    def fail(self, code: str = "UNAVAILABLE") -> None:
        self._events.put_nowait(StageError(Stage.VAD, code, "the fake VAD went away"))


@dataclass
class FakeStages:
    reply: Sequence[str] = ("Paris is lovely today, ", "you should go ", "and walk by the river.")
    transcript: str = "what should I do in Paris"
    heard_as: dict[int, str] = field(default_factory=dict)  # samples (16 kHz) -> words, else `transcript`
    voice_names: set[str] = field(default_factory=lambda: {"af_heart", "bf_emma"})
    voxtral: Knobs = field(default_factory=Knobs)
    tts: Knobs = field(default_factory=Knobs)
    transcribe_knobs: Knobs = field(default_factory=Knobs)
    vad_open_failures: int = 0  # the next this-many opens fail with UNAVAILABLE
    calls: list[Call] = field(default_factory=list)
    vad_opens: list[dict[str, int | str | None]] = field(default_factory=list)  # each VAD stream's settings
    streams: list[FakeVadStream] = field(default_factory=list)
    histories: list[list[HistoryTurn]] = field(default_factory=list)
    # What the model does with tools declared, one entry per respond call in order: calls (after the
    # text `before_call`), or a str: a call it wrote wrong (tool_call_error). Run out: it answers
    # `answer_after_tools`; with no tools declared, `reply`.
    tool_rounds: list[tuple[ToolCall, ...] | str] = field(default_factory=list)
    before_call: Sequence[str] = ("Let me look. ",)
    answer_after_tools: Sequence[str] = ("It is ten to eleven.",)
    closed: bool = False
    # What GetLoad answers per model stage: a load, an error (the stage is down) or None (it hangs).
    loads: dict[Stage, StageLoad | StageError | None] = field(default_factory=dict)

    def connect(self) -> None:
        pass

    @property
    def vad(self) -> FakeVadStream:
        """The stream opened last."""
        return self.streams[-1]

    def of(self, stage: Stage, what: str = "") -> list[Call]:
        return [c for c in self.calls if c.stage is stage and (not what or c.what == what)]

    async def open_vad(self, sample_rate_hz: int, end_silence_ms: int,
                       fallback_ms: int | None = None, detector: Detector | None = None) -> FakeVadStream:
        if self.vad_open_failures > 0:
            self.vad_open_failures -= 1
            raise StageError(Stage.VAD, "UNAVAILABLE", "the fake VAD is down")
        self.streams.append(FakeVadStream(len(self.streams)))
        self.vad_opens.append({"rate": sample_rate_hz, "end_silence_ms": end_silence_ms, "fallback_ms": fallback_ms,
                               "detector": detector})
        return self.streams[-1]

    async def _paced(self, call: Call, knobs: Knobs, pieces: Sequence[object]) -> AsyncIterator[object]:
        """Hand out `pieces` as the knobs say, recording how the call ended."""
        self.calls.append(call)
        try:
            for n, piece in enumerate(pieces):
                if knobs.stall is not None and n == knobs.stall_after:
                    await knobs.stall.wait()
                if knobs.fail_code and n == knobs.fail_after:
                    call.ended = "failed"
                    raise StageError(call.stage, knobs.fail_code, f"the fake {call.stage} failed")
                if knobs.delay_s:
                    await asyncio.sleep(knobs.delay_s)
                yield piece
            if knobs.fail_code and knobs.fail_after >= len(pieces):
                call.ended = "failed"
                raise StageError(call.stage, knobs.fail_code, f"the fake {call.stage} failed")
            call.ended = "done"
        finally:
            if call.ended == "open":
                call.ended = "cancelled"

    async def respond(self, pcm16k: np.ndarray | None, history: Sequence[HistoryTurn], instructions: str,
                      session_id: str, turn_id: str, speculative: bool = False, text: str = "",
                      tools: Sequence[ToolSpec] = (), after: Sequence[HistoryTurn] = ()) -> AsyncIterator[ReplyDelta]:
        self.histories.append(list(history))
        call = Call(Stage.VOXTRAL, "respond", {"samples": 0 if pcm16k is None else len(pcm16k), "turn_id": turn_id,
                                               "speculative": speculative, "instructions": instructions,
                                               "text": text, "tools": [t.name for t in tools], "after": list(after)})
        round_ = self.tool_rounds.pop(0) if tools and self.tool_rounds else None
        said = self.reply if not tools else self.before_call if round_ is not None else self.answer_after_tools
        async for delta in self._paced(call, self.voxtral, said):
            yield ReplyDelta(str(delta), elapsed_ms=1.0)
        if isinstance(round_, str):
            yield ReplyDelta("", 1.0, tool_call_error=round_)
        elif round_:
            yield ReplyDelta("", 1.0, tool_calls=round_)

    async def synthesize(self, text: str, voice: str, speed: float | None, sample_rate_hz: int,
                         session_id: str, turn_id: str, more_follows: bool = False,
                         need_in_ms: int = 0) -> AsyncIterator[SpeechChunk]:
        call = Call(Stage.TTS, "synthesize", {"text": text, "voice": voice, "turn_id": turn_id,
                                              "more_follows": more_follows, "need_in_ms": need_in_ms})
        async for word in self._paced(call, self.tts, text.split()):
            yield SpeechChunk(b"\x10\x00" * SAMPLES_PER_WORD, str(word), compute_ms=1.0)

    async def transcribe(self, pcm16k: np.ndarray, session_id: str, turn_id: str) -> str:
        call = Call(Stage.VOXTRAL, "transcribe", {"samples": len(pcm16k), "turn_id": turn_id})
        said = self.heard_as.get(len(pcm16k), self.transcript)
        words = [w async for w in self._paced(call, self.transcribe_knobs, [said])]
        return "".join(str(w) for w in words)

    async def voices(self) -> set[str]:
        return self.voice_names

    async def load(self, stage: Stage) -> StageLoad:
        if stage not in self.loads:
            raise StageError(stage, "UNIMPLEMENTED", "the fake reports no load for it")
        load = self.loads[stage]
        if isinstance(load, StageError):  # a stage that is down
            raise load
        if load is None:  # a hung stage: no answer ever
            await asyncio.Event().wait()
        assert load is not None
        return load

    async def close(self) -> None:
        self.closed = True
