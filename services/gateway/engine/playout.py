"""A reply's audio as its listener hears it: sent at real time plus a small lead, paused and
resumed, and the heard position known at every moment (the gateway's clock, or the client's
playback report, which is the truth when it comes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from services.common.audio import PCM_MAX
from services.common.limits import AUDIBLE_AMPLITUDE


@dataclass(frozen=True)
class Piece:
    """Audio going out: `offset_ms` is where it starts on the reply's own timeline."""

    pcm: bytes
    offset_ms: float
    text: str  # the clause text, on the clause's first piece only


@dataclass
class Clause:
    text: str
    start: int  # sample offsets on the reply's timeline
    end: int


def audible(pcm: bytes) -> np.ndarray:
    """Indices of the PCM16 samples at or above the audible level."""
    return np.flatnonzero(np.abs(np.frombuffer(pcm, dtype=np.int16).astype(np.int32)) >= AUDIBLE_AMPLITUDE * PCM_MAX)


def first_audible(pcm: bytes) -> int | None:
    """Index of the first sample at or above the audible level."""
    loud = audible(pcm)
    return int(loud[0]) if loud.size else None


class Playout:
    """`add` appends synthesised audio; the pump sends it, `piece_ms` at a time, no more than
    `lead_ms` ahead of what the listener has heard. A held playout (a speculative reply) sends
    nothing until `release`."""

    def __init__(self, rate_hz: int, lead_ms: float, piece_ms: float, held: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_hz = rate_hz
        self.lead = lead_ms / 1000
        self.piece = max(1, int(piece_ms * rate_hz / 1000))
        self._send: Callable[[Piece], Awaitable[None]] | None = None
        self.clock = clock
        self.held = held
        self.paused = False
        self.clauses: list[Clause] = []
        self.audible_at: int | None = None  # first audible sample of the reply
        self.first_sent_at: float | None = None  # clock when the first piece went out
        self.audible_heard_at: float | None = None  # clock when the listener hears the first audible sample
        self._audio = bytearray()
        self._complete = False  # no more audio will be added
        self._sent = 0  # samples sent (since the last rewind, from the heard position)
        self._play_end = 0.0  # clock at which the listener will have played everything sent
        self._frozen: int | None = None  # heard position while paused
        self._changed = asyncio.Event()
        self._released = asyncio.Event()  # set once the playout is not held
        if not held:
            self._released.set()

    # --- what the listener heard ---------------------------------------------------------------

    @property
    def total(self) -> int:
        return len(self._audio) // 2

    def heard(self) -> int:
        """Samples of the reply the listener has heard by now."""
        if self._frozen is not None:
            return self._frozen
        ahead = max(0.0, self._play_end - self.clock())
        return max(0, self._sent - int(ahead * self.rate_hz))

    def heard_ms(self) -> float:
        return self.heard() * 1000 / self.rate_hz

    def needs_more_in(self) -> float:
        """Seconds until the listener has heard all the audio there is: when the next clause is
        needed (0 while the reply is held or paused: its timing is not known, so as soon as can be)."""
        if self.held or self.paused:
            return 0.0
        return max(0.0, self._play_end - self.clock()) + (self.total - self._sent) / self.rate_hz

    def report(self, played_ms: float) -> None:
        """The client's playback position on the reply's timeline: the truth from now on."""
        played = min(self._sent, max(0, int(played_ms * self.rate_hz / 1000)))
        if self._frozen is not None:
            self._frozen = played
        else:
            self._play_end = self.clock() + (self._sent - played) / self.rate_hz
        self._changed.set()

    def heard_text(self) -> str:
        """The words heard: whole clauses, and the part of the current one in proportion to its
        audio played."""
        heard = self.heard()
        words: list[str] = []
        for clause in self.clauses:
            if heard >= clause.end:
                words += clause.text.split()
            elif heard > clause.start:
                parts = clause.text.split()
                words += parts[: int(len(parts) * (heard - clause.start) / (clause.end - clause.start))]
                break
            else:
                break
        return " ".join(words)

    @property
    def cut_off(self) -> bool:
        """Is part of the reply unheard (so far)?"""
        return not self._complete or self.heard() < self.total

    # --- input ---------------------------------------------------------------------------------

    def add(self, pcm: bytes, text: str) -> None:
        """A clause's (or part of a clause's) audio, in order."""
        if not pcm:
            return
        start = self.total
        if self.audible_at is None and (index := first_audible(pcm)) is not None:
            self.audible_at = start + index
        self._audio += pcm
        if self.clauses and not text:
            self.clauses[-1].end = self.total
        else:
            self.clauses.append(Clause(text, start, self.total))
        self._changed.set()

    def complete(self) -> None:
        self._complete = True
        self._changed.set()

    # --- control -------------------------------------------------------------------------------

    def release(self) -> None:
        self.held = False
        self._released.set()
        self._changed.set()

    async def released(self) -> None:
        """Returns once the playout is not held (a speculative reply confirmed)."""
        await self._released.wait()

    def pause(self) -> float:
        """Stop sending; the listener is taken to stop hearing now. Returns the heard position (ms)."""
        if not self.paused:
            self._frozen = self.heard()
            self.paused = True
            self._changed.set()
        return self.heard_ms()

    def resume(self) -> float:
        """Send again from where the listener stopped hearing. Returns that position (ms)."""
        if self.paused:
            heard = self.heard()
            self._sent = heard  # what was sent past it is sent again: a paused client drops its queue
            self._play_end = self.clock()
            self._frozen = None
            self.paused = False
            self._changed.set()
        return self.heard_ms()

    # --- the pump ------------------------------------------------------------------------------

    def attach(self, send: Callable[[Piece], Awaitable[None]]) -> None:
        """Where the pieces go (the turn's runner sets it before `run`)."""
        self._send = send

    async def run(self) -> None:
        """Send everything, paced; returns once the listener has heard all of a complete reply."""
        while True:
            self._changed.clear()
            if self.held or self.paused:
                await self._changed.wait()
                continue
            if self._sent < self.total:
                wait = (self._play_end - self.clock()) - self.lead
                if wait > 0:
                    await self._wait(wait)
                    continue
                await self._send_piece()
                continue
            if self._complete:
                remaining = self._play_end - self.clock()
                if remaining <= 0:
                    return
                await self._wait(remaining)
                continue
            await self._changed.wait()

    async def _wait(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._changed.wait()
        except TimeoutError:
            pass

    async def _send_piece(self) -> None:
        start = self._sent
        end = min(self.total, start + self.piece)
        text = ""
        for clause in self.clauses:  # a piece never spans two clauses: each clause's text rides on its start
            if clause.start == start:
                text = clause.text
            elif start < clause.start < end:
                end = clause.start
        now = self.clock()
        plays_from = max(now, self._play_end)
        if self.first_sent_at is None:
            self.first_sent_at = now
        if self.audible_heard_at is None and self.audible_at is not None and start <= self.audible_at < end:
            self.audible_heard_at = plays_from + (self.audible_at - start) / self.rate_hz
        self._sent = end
        self._play_end = plays_from + (end - start) / self.rate_hz
        assert self._send is not None, "attach() comes before run()"
        await self._send(Piece(bytes(self._audio[start * 2:end * 2]), start * 1000 / self.rate_hz, text))
