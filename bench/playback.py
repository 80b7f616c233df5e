"""What a listener heard, read from the audio as it was played (clients.listener): when the
first audible sample of a reply played, how much silence led it, the silence at each clause
junction, when the reply's sound stopped."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clients.listener import Played
from services.gateway.engine.playout import audible as audible_samples


def audible(piece: Played) -> np.ndarray:
    """Indices of the piece's audible samples."""
    return audible_samples(piece.pcm)


def of_reply(log: Sequence[Played], turn_id: str) -> list[Played]:
    return [p for p in log if p.turn_id == turn_id and p.samples]


def first_audible_at(pieces: Sequence[Played]) -> float | None:
    """Clock time the first audible sample played."""
    for piece in pieces:
        loud = audible(piece)
        if loud.size:
            return piece.at + loud[0] / piece.rate_hz
    return None


def leading_silence_ms(pieces: Sequence[Played]) -> float | None:
    """From the reply's first sample played to its first audible one."""
    first = first_audible_at(pieces)
    return None if first is None or not pieces else (first - pieces[0].at) * 1000


def junction_gaps_ms(pieces: Sequence[Played]) -> list[float]:
    """Per clause after the first: silence heard from the last audible sample before the clause
    to its first audible sample (stalls included: they are heard as silence too)."""
    gaps: list[float] = []
    last_loud: float | None = None
    waiting = False  # a clause has begun and its first audible sample is not yet found
    for index, piece in enumerate(pieces):
        if piece.text and index > 0:
            waiting = True
        loud = audible(piece)
        if not loud.size:
            continue
        if waiting and last_loud is not None:
            gaps.append((piece.at + loud[0] / piece.rate_hz - last_loud) * 1000)
        waiting = False
        last_loud = piece.at + (loud[-1] + 1) / piece.rate_hz
    return gaps


def last_sound_at(pieces: Sequence[Played]) -> float | None:
    """Clock time the reply's last audible sample ended."""
    for piece in reversed(pieces):
        loud = audible(piece)
        if loud.size:
            return piece.at + (loud[-1] + 1) / piece.rate_hz
    return None


def played_audio(pieces: Sequence[Played]) -> np.ndarray:
    """The reply's samples as played, in order (int16)."""
    return np.frombuffer(b"".join(p.pcm for p in pieces), dtype=np.int16)
