"""The peer for `make bench-endpoint`: Pipecat 1.14's own Silero VAD (stop 0.2 s) and Smart Turn v3.2
analyzers, driven the way its turn-stop strategy drives them, on the cases the benchmark sends.

Runs in its own virtual environment (.venv-peer, `pipecat-ai==1.14.0`: a bench-only extra, never
a dependency of the services); imports nothing from this project. Protocol on stdin/stdout, one
case at a time: a 4-byte little-endian sample count, then that many PCM16 samples at 16 kHz; the
answer is one JSON line, a list of [kind, start_sample, end_sample, decided_at_sample]. As in the
benchmark's own player, a model answer is applied where the stream has got to after the
decision's measured time, 20 ms at a time.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time

from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

RATE = 16000
STEP = RATE // 50


async def play(pcm: bytes, vad: SileroVADAnalyzer, turn: LocalSmartTurnAnalyzerV3) -> list[list[object]]:
    events: list[list[object]] = []
    speaking = False
    start = 0
    pending: tuple[int, EndOfTurnState] | None = None  # (apply at sample, model state)
    total = len(pcm) // 2
    for at in range(0, total, STEP):
        position = min(total, at + STEP)
        chunk = pcm[at * 2 : position * 2]
        if pending is not None and pending[0] <= at:
            if pending[1] == EndOfTurnState.COMPLETE and not speaking:
                events.append(["ENDED", start, at, at])
            pending = None
        state = await vad.analyze_audio(chunk)
        now_speaking = state == VADState.SPEAKING or (speaking and state == VADState.STOPPING)
        if now_speaking and not speaking:
            start = max(0, position - int(vad.params.start_secs * RATE))
            events.append(["STARTED", start, position, position])
            pending = None  # speech again: an earlier conclusion is stale
        fallback = turn.append_audio(chunk, now_speaking)
        if fallback == EndOfTurnState.COMPLETE:
            events.append(["ENDED", start, position, position])
            pending = None
        if speaking and not now_speaking:  # VAD says stopped: ask the model once
            began = time.perf_counter()
            result, _ = await turn.analyze_end_of_turn()
            pending = (position + int((time.perf_counter() - began) * RATE), result)
        speaking = now_speaking
    return events


def new_vad() -> SileroVADAnalyzer:
    vad = SileroVADAnalyzer(sample_rate=RATE, params=VADParams(stop_secs=0.2))
    vad.set_sample_rate(RATE)  # what the pipeline's start does: derives the frame counts
    return vad


async def main() -> None:
    turn = LocalSmartTurnAnalyzerV3(sample_rate=RATE)
    turn.set_sample_rate(RATE)
    source, sink = sys.stdin.buffer, sys.stdout
    while header := source.read(4):
        (count,) = struct.unpack("<I", header)
        pcm = source.read(count * 2)
        turn.clear()
        sink.write(json.dumps(await play(pcm, new_vad(), turn)) + "\n")
        sink.flush()


if __name__ == "__main__":
    asyncio.run(main())
