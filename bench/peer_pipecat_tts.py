"""The peer for `make bench-conversation`'s first_audible_vs_pipecat: Pipecat 1.14's
KokoroTTSService (kokoro-onnx) on the model and voice files given, asked for a reply's first
sentence, which is what Pipecat's sentence aggregation hands its TTS first. Prints one JSON line:
milliseconds from the request to the first audible sample (-45 dBFS), per run.

Runs in its own virtual environment (.venv-peer: pipecat-ai[kokoro]==1.14.0, a bench-only extra);
imports nothing from this project. The service is driven through run_tts directly, without a
pipeline around it (which can only add time to Pipecat's figure).

    peer_pipecat_tts.py MODEL.onnx VOICES.npz VOICE RUNS TEXT
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import numpy as np
from pipecat.frames.frames import TTSAudioRawFrame
from pipecat.services.kokoro.tts import KokoroTTSService

AUDIBLE = 10 ** (-45 / 20) * 32768
RATE = 24000


async def main(model: str, voices: str, voice: str, runs: int, text: str) -> None:
    first_sentence = re.split(r"(?<=[.!?])\s+", text.strip())[0]
    service = KokoroTTSService(model_path=model, voices_path=voices, settings=KokoroTTSService.Settings(voice=voice),
                               sample_rate=RATE)
    service._sample_rate = RATE  # what the pipeline's setup sets: the output rate  # noqa: SLF001
    out: list[float] = []
    for run in range(runs + 1):  # the first run warms the model up and is not counted
        began = time.perf_counter()
        heard = None
        async for frame in service.run_tts(first_sentence, f"bench-{run}"):
            if isinstance(frame, TTSAudioRawFrame) and heard is None:
                loud = np.flatnonzero(np.abs(np.frombuffer(frame.audio, dtype=np.int16).astype(np.int32)) >= AUDIBLE)
                if loud.size:
                    heard = (time.perf_counter() - began) * 1000 + loud[0] * 1000 / frame.sample_rate
        if run and heard is not None:
            out.append(round(heard, 1))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
