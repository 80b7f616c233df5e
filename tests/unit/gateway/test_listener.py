"""The client-side player on a fake clock (the CLI client and the benchmarks use it), and what the
benchmark reads from the audio as played."""

from __future__ import annotations

import numpy as np
from pytest import approx

from bench.playback import first_audible_at, junction_gaps_ms, last_sound_at, leading_silence_ms
from clients.listener import Listener

RATE = 24000


def audio(silent_ms: float, loud_ms: float, trailing_ms: float = 0.0) -> bytes:
    parts = [np.zeros(int(RATE * silent_ms / 1000)), np.full(int(RATE * loud_ms / 1000), 3000),
             np.zeros(int(RATE * trailing_ms / 1000))]
    return np.concatenate(parts).astype(np.int16).tobytes()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pieces_play_back_to_back_and_a_late_one_is_a_stall() -> None:
    clock = Clock()
    player = Listener(clock)
    first = player.audio("t", audio(0, 100), RATE, 0.0, "one")
    second = player.audio("t", audio(0, 100), RATE, 100.0)  # arrives while the first plays: queued
    assert (first.at, second.at) == (0.0, 0.1)
    clock.now = 0.5
    late = player.audio("t", audio(0, 100), RATE, 200.0, "two")  # the queue ran dry at 0.2 s
    assert late.at == 0.5 and player.stalls == [0.3]
    assert player.position() == ("t", 200.0)


def test_stopping_drops_the_queue_and_says_where_playback_was() -> None:
    clock = Clock()
    player = Listener(clock)
    player.audio("t", audio(0, 100), RATE, 0.0)
    player.audio("t", audio(0, 100), RATE, 100.0)
    clock.now = 0.05
    assert player.stop() == ("t", 50.0)
    assert [p.samples for p in player.log] == [RATE // 20]  # half of the first piece, nothing after
    assert not player.playing()


def test_what_the_benchmark_reads_from_the_played_audio() -> None:
    player = Listener(Clock())
    player.audio("t", audio(20, 300, 40), RATE, 0.0, "first clause,")
    player.audio("t", audio(180, 300), RATE, 360.0, "second.")
    pieces = player.log
    assert first_audible_at(pieces) == approx(0.02) and leading_silence_ms(pieces) == approx(20.0)
    assert junction_gaps_ms(pieces) == [approx(220.0)]  # 40 ms of tail and 180 ms before the next clause
    assert last_sound_at(pieces) == approx(0.84)
