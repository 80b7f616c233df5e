"""Real recordings (make assets) and espeak-ng speech with silences of known length."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ROOT / ".cache" / "assets" / "recordings"


def recording(name: str) -> tuple[np.ndarray, int]:
    """int16 samples and rate of a recording fetched by `make assets`."""
    path = RECORDINGS / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make assets`")
    samples, rate = sf.read(path, dtype="int16")
    return samples, rate


def espeak(text: str) -> tuple[np.ndarray, int]:
    """espeak-ng speech (22050 Hz) with its leading and trailing silence cut off."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", wav.name, text], check=True)
        samples, rate = sf.read(wav.name, dtype="int16")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    return samples[loud[0] : loud[-1] + 1], rate


def silence(rate: int, ms: int) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)
