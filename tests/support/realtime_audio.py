"""The speech a Realtime client test sends: a real recording's first sentence, then silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.recordings import recording
from services.common.audio import resample


def speech(rate: int = 24000) -> bytes:
    """The first sentence of beckett.wav, then 2 s of silence, as PCM16 at `rate`."""
    samples, source = recording("beckett.wav")
    said = resample(samples[: int(source * 3.4)], source, rate)
    return np.concatenate([said, np.zeros(rate * 2, np.int16)]).astype("<i2").tobytes()


def speech_file(folder: Path) -> Path:
    """`speech()` at 24 kHz in a file, as the SDKs in other languages read it."""
    path = folder / "speech.pcm"
    path.write_bytes(speech())
    return path
