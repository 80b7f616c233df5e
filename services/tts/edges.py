"""Kokoro's clause audio with natural edges: the model pads each clause with 300-400 ms of
silence before and ~500 ms after, which reads as dead air at every clause junction. Each clause
is cut to a short lead-in and a short decay, and a clause that more speech follows ends with one
natural pause (heard while the next clause is synthesised)."""

from __future__ import annotations

import numpy as np

from services.common.limits import AUDIBLE_AMPLITUDE

FADE_MS = 5  # ramp over the cut edges: no click, whatever the sample there


def audible_span(audio: np.ndarray) -> tuple[int, int] | None:
    """First and one-past-last sample at or above the audible level; None when nothing is."""
    loud = np.flatnonzero(np.abs(audio) >= AUDIBLE_AMPLITUDE)
    if loud.size == 0:
        return None
    return int(loud[0]), int(loud[-1]) + 1


def shape(audio: np.ndarray, rate_hz: int, lead_ms: float, tail_ms: float, pause_ms: float = 0.0) -> np.ndarray:
    """`audio` (float, full scale 1.0) from `lead_ms` before its first audible sample to `tail_ms`
    after its last, faded at both cut edges, then `pause_ms` of silence. Nothing audible: empty."""
    span = audible_span(audio)
    if span is None:
        return np.zeros(0, dtype=np.float32)
    start = max(0, span[0] - int(lead_ms * rate_hz / 1000))
    end = min(len(audio), span[1] + int(tail_ms * rate_hz / 1000))
    out = audio[start:end].astype(np.float32, copy=True)
    fade = min(int(FADE_MS * rate_hz / 1000), len(out) // 2)
    if fade and start > 0:
        out[:fade] *= np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
    if fade and end < len(audio):
        out[-fade:] *= np.linspace(1.0, 0.0, fade, endpoint=False, dtype=np.float32)
    pause = np.zeros(int(pause_ms * rate_hz / 1000), dtype=np.float32)
    return np.concatenate([out, pause]) if pause.size else out
