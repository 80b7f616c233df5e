"""The playout alone: pacing at real time plus the lead, the heard position from the clock or a
playback report, heard text cut within a clause in proportion to its audio played."""

from __future__ import annotations

import asyncio

import numpy as np

from services.gateway.engine.playout import Piece, Playout, first_audible

RATE = 24000


def tone(ms: float, level: int = 3000) -> bytes:
    return np.full(int(RATE * ms / 1000), level, dtype=np.int16).tobytes()


def silence(ms: float) -> bytes:
    return np.zeros(int(RATE * ms / 1000), dtype=np.int16).tobytes()


async def play(playout: Playout) -> list[tuple[Piece, float]]:
    """Run the pump to the end, noting how far ahead of the listener each piece went out."""
    sent: list[tuple[Piece, float]] = []

    async def send(piece: Piece) -> None:
        sent.append((piece, piece.offset_ms - playout.heard_ms()))

    playout.attach(send)
    await asyncio.wait_for(playout.run(), 10)
    return sent


async def test_audio_goes_out_paced_never_more_than_the_lead_ahead() -> None:
    playout = Playout(RATE, lead_ms=60, piece_ms=20)
    playout.add(tone(300), "one clause")
    playout.complete()
    sent = await play(playout)
    assert sum(len(p.pcm) for p, _ in sent) == len(tone(300))
    assert max(ahead for _, ahead in sent) <= 60 + 1  # the lead (a piece starts at most that far ahead)
    assert [p.offset_ms for p, _ in sent] == [20.0 * i for i in range(15)]
    assert playout.heard() == playout.total  # run() ends once the listener has heard it all


async def test_pieces_start_at_clause_boundaries_and_carry_the_clause_text() -> None:
    playout = Playout(RATE, lead_ms=10_000, piece_ms=40)
    playout.add(tone(50), "first clause,")
    playout.add(tone(30), "")  # more of the same clause
    playout.add(tone(50), "second one.")
    playout.complete()
    sent = await play(playout)
    assert [(p.offset_ms, p.text) for p, _ in sent] == [(0.0, "first clause,"), (40.0, ""), (80.0, "second one."),
                                                         (120.0, "")]


def test_heard_text_is_cut_in_proportion_to_the_clause_played() -> None:
    now = [0.0]
    playout = Playout(RATE, lead_ms=10_000, piece_ms=1000, clock=lambda: now[0])
    playout.add(tone(400), "one two three four")
    playout.add(tone(400), "five six")
    sent: list[Piece] = []

    async def send(piece: Piece) -> None:
        sent.append(piece)

    playout.attach(send)
    asyncio.run(playout._send_piece())  # one piece by hand: no pump, a fake clock
    asyncio.run(playout._send_piece())
    now[0] = 0.3  # by the clock, 300 ms heard
    assert playout.heard_ms() == 300.0 and playout.heard_text() == "one two three"
    playout.report(600.0)  # the client says: 600 ms played
    assert playout.heard_text() == "one two three four five"
    playout.pause()
    now[0] = 5.0
    assert playout.heard_ms() == 600.0  # paused: the listener hears no more
    playout.report(500.0)  # a paused client's final position is the truth
    assert playout.heard_text() == "one two three four" and playout.cut_off
    assert playout.resume() == 500.0


def test_the_first_audible_sample() -> None:
    assert first_audible(silence(20) + tone(10)) == 480
    assert first_audible(np.full(100, 10, dtype=np.int16).tobytes()) is None  # -70 dBFS is not audible
