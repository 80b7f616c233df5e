"""A client's side of reply playback, on the clock instead of a sound card: each audio piece plays
when the one before it ends (or at once, when the queue has run dry), `reply_paused` and
`interrupted` drop what is queued, and the position can be reported to the gateway. The CLI
client and the benchmarks use it to play replies as a listener hears them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Played:
    """A piece of reply audio as played: from `at` (clock seconds) for `samples` samples."""

    turn_id: str
    offset_ms: float  # on the reply's timeline
    at: float
    pcm: bytes
    rate_hz: int
    text: str = ""  # the clause this piece begins, if it begins one

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    @property
    def end(self) -> float:
        return self.at + self.samples / self.rate_hz


class Listener:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.log: list[Played] = []  # everything played (or playing, or queued), in order
        self.stalls: list[float] = []  # seconds the queue ran dry inside a reply

    def audio(self, turn_id: str, pcm: bytes, rate_hz: int, offset_ms: float, text: str = "") -> Played:
        """A piece arrives: it plays right after what is queued."""
        now = self.clock()
        last = self.log[-1] if self.log else None
        at = now
        if last is not None and last.end > now:
            at = last.end
        elif last is not None and last.turn_id == turn_id and offset_ms > last.offset_ms and now - last.end > 0.02:
            self.stalls.append(now - last.end)  # the reply went on, but its audio came late
        piece = Played(turn_id, offset_ms, at, pcm, rate_hz, text)
        self.log.append(piece)
        return piece

    def stop(self) -> tuple[str, float] | None:
        """Playback stops now (reply_paused, interrupted): what was queued is dropped. Returns the
        reply and the position reached, to report."""
        now = self.clock()
        kept: list[Played] = []
        for piece in self.log:
            if piece.at >= now:
                continue  # never started
            if piece.end > now:  # cut where it is
                played = int((now - piece.at) * piece.rate_hz)
                piece = Played(piece.turn_id, piece.offset_ms, piece.at, piece.pcm[: played * 2], piece.rate_hz,
                               piece.text)
            kept.append(piece)
        self.log = kept
        return self.position()

    def position(self) -> tuple[str, float] | None:
        """The reply playing (or played last) and how far into it playback is now."""
        now = self.clock()
        for piece in reversed(self.log):
            if piece.at <= now:
                played = min(piece.samples, int((now - piece.at) * piece.rate_hz))
                return piece.turn_id, piece.offset_ms + played * 1000 / piece.rate_hz
        return None

    def playing(self) -> bool:
        return bool(self.log) and self.log[-1].end > self.clock()
