"""The speech a Realtime client test sends: a real recording's first sentence, then silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.recordings import recording
from services.common.audio import resample


def speech_file(folder: Path) -> Path:
    """The first sentence of beckett.wav, then 2 s of silence: 24 kHz PCM16, as the SDKs send it."""
    samples, source = recording("beckett.wav")
    said = resample(samples[: int(source * 3.4)], source, 24000)
    path = folder / "speech.pcm"
    path.write_bytes(np.concatenate([said, np.zeros(48000, np.int16)]).astype("<i2").tobytes())
    return path
