"""The real speech recogniser that judges what the TTS says: faster-whisper tiny.en (CTranslate2)."""

from __future__ import annotations

import re

import numpy as np

from harness.asr import model
from services.common.audio import resample


def transcribe(pcm16: np.ndarray, rate: int) -> str:
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
