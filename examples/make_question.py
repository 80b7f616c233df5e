"""Speak a question with Kokoro (a voice other than the replies') into a 16 kHz WAV for the CLI
client: `python examples/make_question.py "What is the weather like in Paris today?" question.wav`.
examples/question.wav was made this way."""

from __future__ import annotations

import argparse
import asyncio

import numpy as np
import soundfile as sf

from services.tts.config import TtsSettings
from services.tts.server import TtsServicer
from services.tts.synthesizer import SpeechRequest

RATE = 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("text")
    parser.add_argument("out")
    parser.add_argument("--voice", default="am_michael")
    args = parser.parse_args()
    servicer = TtsServicer(TtsSettings())
    servicer.load()
    synthesizer = servicer.synthesizer.get()

    async def speak() -> bytes:  # as the service streams it: natural edges between its pieces
        request = SpeechRequest(args.text, args.voice, 1.0, RATE)
        return b"".join([chunk.pcm async for chunk in synthesizer.stream(request)])

    said = np.frombuffer(asyncio.run(speak()), "<i2")
    quiet = np.zeros(RATE * 3 // 10, np.int16)  # a moment before speaking
    sf.write(args.out, np.concatenate([quiet, said]), RATE, subtype="PCM_16")
    print(f"wrote {args.out} ({len(said) / RATE:.2f} s of speech)")


if __name__ == "__main__":
    main()
