"""End-of-turn test material cut from real recordings: complete sentences, sentences with a pause
inserted mid-phrase, each recording's own room tone, and noise (white, babble, coloured) at
levels in dBFS. Word boundaries come from the real recogniser's word timestamps (cached); the
true end of speech is where the signal last rises above the recording's own noise floor."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from harness.recordings import ROOT, recording
from services.common.audio import resample

RATE = 16000
WORDS_DIR = ROOT / ".cache" / "assets" / "words"
# The recogniser's words for NAMES, transcribed once and kept: its punctuation is not the same on every
# machine (the 2026-11-30 benchmark had two_cities.wav in sentences, this transcript has it as one), and
# a full stop more or less changes which sentences every test and benchmark is given.
KEPT_WORDS = ROOT / "harness" / "words"
NAMES = ("beckett.wav", "two_cities.wav", "endgame_nagg_nell.wav")
FRAME = RATE // 100  # 10 ms
# A frame this far above the recording's noise floor is speech (for the true end only).
SPEECH_ABOVE_FLOOR_DB = 20.0
BELOW_PEAK_DB = 35.0
SENTENCE_END = (".", "?", "!")
PHRASE_BREAK = (",", ";", ":", "-") + SENTENCE_END


@dataclass(frozen=True)
class Word:
    text: str
    start: int  # samples at 16 kHz
    end: int


@dataclass(frozen=True)
class Sentence:
    recording: str
    text: str
    start: int  # samples: where the cut begins (before the first word)
    end: int  # samples: the true end of speech
    breaks: tuple[int, ...]  # samples: mid-phrase word boundaries (a pause may be inserted there)
    longest_gap: int  # samples: the longest silence between its words


@functools.cache
def audio(name: str) -> np.ndarray:
    """The recording at 16 kHz mono, float32 in [-1, 1]."""
    samples, rate = recording(name)
    if samples.ndim > 1:
        samples = samples.mean(axis=1).astype(np.int16)
    return (resample(samples, rate, RATE).astype(np.float32) / 32768.0)


def levels_db(x: np.ndarray, frame: int = FRAME) -> np.ndarray:
    frames = x[: len(x) // frame * frame].reshape(-1, frame).astype(np.float64)
    return 10 * np.log10(np.mean(frames * frames, axis=1) + 1e-12)


def noise_floor_db(x: np.ndarray) -> float:
    return float(np.percentile(levels_db(x), 5))


@functools.cache
def words(name: str) -> tuple[Word, ...]:
    """The recogniser's words with sample offsets: kept in harness/words/, or transcribed here and
    cached under .cache/assets/words/."""
    kept = KEPT_WORDS / (name + ".json")
    cache = kept if kept.exists() else WORDS_DIR / (name + ".json")
    if cache.exists():
        raw = json.loads(cache.read_text())
    else:
        from harness.asr import timed_words

        raw = [[w.text, w.start_s, w.end_s] for w in timed_words(audio(name))]
        WORDS_DIR.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(raw))
    return tuple(Word(t, int(s * RATE), int(e * RATE)) for t, s, e in raw)


def true_end(x: np.ndarray, near: int, floor_db: float) -> int:
    """The end of the last 10 ms frame within 0.4 s either side of `near` that is above floor + 20 dB
    and within 35 dB of the loudest frame there (a breath after the word is not speech)."""
    lo, hi = max(0, near - RATE * 4 // 10), min(len(x), near + RATE * 4 // 10)
    db = levels_db(x[lo:hi])
    loud = np.flatnonzero(db > max(floor_db + SPEECH_ABOVE_FLOOR_DB, float(db.max()) - BELOW_PEAK_DB))
    return lo + (int(loud[-1]) + 1) * FRAME if len(loud) else near


@functools.cache
def sentences(name: str) -> tuple[Sentence, ...]:
    x, ws = audio(name), words(name)
    floor = noise_floor_db(x)
    out: list[Sentence] = []
    first = 0
    for i, w in enumerate(ws):
        if not w.text.endswith(SENTENCE_END):
            continue
        group = ws[first : i + 1]
        prev_end = ws[first - 1].end if first else 0
        start = max(prev_end, group[0].start - RATE // 5)
        end = true_end(x, w.end, floor)
        nxt = ws[i + 1].start if i + 1 < len(ws) else len(x)
        breaks = tuple(
            (a.end + b.start) // 2 for a, b in zip(group, group[1:], strict=False)
            if not a.text.endswith(PHRASE_BREAK) and b.start - a.end < RATE // 4
        )
        if end <= nxt and end - start > RATE // 4:
            gap = max((b.start - a.end for a, b in zip(group, group[1:], strict=False)), default=0)
            out.append(Sentence(name, " ".join(g.text for g in group), start, end, breaks, gap))
        first = i + 1
    return tuple(out)


@functools.cache
def room_tone(name: str) -> np.ndarray:
    """The recording's quietest 10 ms frames joined (what its room sounds like between words)."""
    x = audio(name)
    db = levels_db(x)
    quiet = np.flatnonzero(db <= np.percentile(db, 20))
    return np.concatenate([x[i * FRAME : (i + 1) * FRAME] for i in quiet]).astype(np.float32)


def loop(x: np.ndarray, n: int) -> np.ndarray:
    return np.resize(x, n).astype(np.float32) if len(x) else np.zeros(n, np.float32)


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1.0
    return (x * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def white(n: int, dbfs: float, seed: int = 0) -> np.ndarray:
    return at_level(np.random.default_rng(seed).standard_normal(n).astype(np.float32), dbfs)


def coloured_like(tone: np.ndarray, n: int, dbfs: float, seed: int = 0) -> np.ndarray:
    """Noise with the long-term spectrum of `tone` (random phases), at dbfs."""
    size = 4096
    frames = tone[: len(tone) // size * size].reshape(-1, size) if len(tone) >= size else np.resize(tone, (1, size))
    magnitude = np.sqrt(np.mean(np.abs(np.fft.rfft(frames * np.hanning(size), axis=1)) ** 2, axis=0))
    rng = np.random.default_rng(seed)
    spectrum = np.interp(np.linspace(0, 1, n // 2 + 1), np.linspace(0, 1, len(magnitude)), magnitude)
    noise = np.fft.irfft(spectrum * np.exp(2j * np.pi * rng.random(n // 2 + 1)), n=n)
    return at_level(noise.astype(np.float32), dbfs)


def babble(n: int, dbfs: float, seed: int = 0) -> np.ndarray:
    """Several talkers at once: the recordings' speech, offset and summed (a café, not a hiss)."""
    rng = np.random.default_rng(seed)
    mix = np.zeros(n, np.float32)
    for k in range(6):
        src = audio(NAMES[k % len(NAMES)])
        talker = at_level(src, -20.0)  # each talker equally loud
        mix += np.roll(loop(talker, n), int(rng.integers(0, len(src))))
    return at_level(mix, dbfs)


def clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def pcm16(x: np.ndarray) -> bytes:
    return (clip(x) * 32767).astype("<i2").tobytes()


def quietest_point(x: np.ndarray, near: int) -> int:
    """The middle of the quietest 10 ms within 125 ms of `near` (where a pause can be inserted)."""
    lo = max(0, near - RATE // 8)
    db = levels_db(x[lo : near + RATE // 8])
    return lo + int(np.argmin(db)) * FRAME + FRAME // 2


def sentence(name: str, prefix: str) -> Sentence:
    """The sentence of `name` that starts with `prefix` (as the recogniser wrote it)."""
    for s in sentences(name):
        if s.text.lower().startswith(prefix.lower()):
            return s
    raise LookupError(f"{name} has no sentence starting {prefix!r}: {[s.text for s in sentences(name)]}")


def cut_after(name: str, s: Sentence, word: str) -> int:
    """The quietest point between `word` (within sentence s) and the word after it."""
    inside = [w for w in words(name) if s.start <= w.start < s.end]
    for a, b in zip(inside, inside[1:], strict=False):
        if a.text.lower().strip(".,?!;:") == word.lower():
            return quietest_point(audio(name), (a.end + b.start) // 2)
    raise LookupError(f"{word!r} is not followed by another word in {s.text!r}")
