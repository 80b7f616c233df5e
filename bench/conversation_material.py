"""What `make bench-conversation` says and plays: sentences and single words cut from the real
recordings (with their true onset and end), and synthetic coughs and door thuds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness import speech_set as ss

RATE = ss.RATE


@dataclass(frozen=True)
class Clip:
    name: str
    x: np.ndarray  # float32 at 16 kHz
    onset: int  # first sample of speech (or sound)
    end: int  # true end of speech


def sentence_clip(s: ss.Sentence) -> Clip:
    x = ss.audio(s.recording)[s.start: s.end + RATE // 20]
    floor = ss.noise_floor_db(ss.audio(s.recording))
    loud = np.flatnonzero(ss.levels_db(x) > floor + ss.SPEECH_ABOVE_FLOOR_DB)
    return Clip(s.text, x, int(loud[0]) * ss.FRAME if loud.size else 0, s.end - s.start)


def word_clip(name: str, index: int) -> Clip:
    w = ss.words(name)[index]
    x = ss.audio(name)
    end = ss.true_end(x, w.end, ss.noise_floor_db(x))
    start = max(0, w.start - RATE // 20)
    return Clip(w.text, x[start: end + RATE // 20], w.start - start, end - start)


def cough(seed: int) -> Clip:
    """A short broadband burst with a fast attack and a 150-250 ms decay, at speech level."""
    rng = np.random.default_rng(seed)
    n = int(RATE * (0.15 + 0.1 * rng.random()))
    noise = rng.standard_normal(n)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < 250) | (freqs > 4000)] = 0
    burst = np.fft.irfft(spectrum, n) * np.exp(-np.arange(n) / (0.35 * n)) * np.minimum(1, np.arange(n) / 80)
    return Clip(f"cough {seed}", ss.at_level(burst.astype(np.float32), -18.0), 0, n)


def door(seed: int) -> Clip:
    """A thud: low-frequency noise with an instant attack, decaying over ~100 ms, and a click."""
    rng = np.random.default_rng(100 + seed)
    n = RATE // 5
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / RATE) > 400] = 0
    thud = np.fft.irfft(spectrum, n) * np.exp(-np.arange(n) / (RATE * 0.04))
    thud[:40] += rng.standard_normal(40) * 3
    return Clip(f"door {seed}", ss.at_level(thud.astype(np.float32), -14.0), 0, n)


def material(turns: int, interruptions: int) -> dict[str, list[Clip]]:
    every = [s for name in ss.NAMES for s in ss.sentences(name) if 1.2 * RATE <= s.end - s.start <= 6 * RATE]
    every.sort(key=lambda s: (s.recording, s.start))
    questions = [sentence_clip(s) for s in every[::2]][:turns]
    overs = [sentence_clip(s) for s in every[1::2] if s.end - s.start >= 1.5 * RATE][:interruptions]
    endgame = ss.words("endgame_nagg_nell.wav")
    yes = [i for i, w in enumerate(endgame) if w.text.lower().strip(".,!?") == "yes"]
    backchannels = [word_clip("endgame_nagg_nell.wav", i) for i in yes]
    sounds = [cough(1), cough(2), cough(3), *backchannels, *backchannels, door(1), door(2), door(3)]
    return {"questions": questions, "interruptions": overs, "sounds": sounds}
