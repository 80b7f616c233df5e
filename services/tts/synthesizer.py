"""Text to streamed speech: validation, clause splitting, phonemes, synthesis, resampling.
Plain asyncio; no gRPC in here."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from services.common.audio import StreamResampler, check_sample_rate, to_pcm16
from services.common.clauses import split_clauses
from services.common.errors import InvalidArgument
from services.common.limits import SPEED
from services.common.slots import SlotPool
from services.tts.config import TtsSettings
from services.tts.edges import shape
from services.tts.emotion import choose_delivery
from services.tts.engine import MAX_PHONEMES, SAMPLE_RATE, SpeechEngine, count_phonemes
from services.tts.phonemes import EnglishPhonemizer
from services.tts.voices import VoiceBank

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeechChunk:
    pcm: bytes  # PCM16LE mono at sample_rate_hz
    text: str
    sample_rate_hz: int
    segment_index: int
    compute_ms: float
    voice: str
    speed: float


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: str
    speed: float
    sample_rate_hz: int
    more_follows: bool = False  # more of the utterance comes in a later request: end with the pause


class Synthesizer:
    def __init__(self, settings: TtsSettings, engine: SpeechEngine, voices: VoiceBank,
                 phonemizer: EnglishPhonemizer) -> None:
        self.settings = settings
        self.engine = engine
        self.voices = voices
        self.phonemizer = phonemizer
        self.pool = SlotPool(settings.slots, settings.max_queue, "tts")

    def check(self, text: str, voice: str, speed: float | None, sample_rate_hz: int,
              more_follows: bool = False) -> SpeechRequest | None:
        """A validated request, or None when the text is too short to speak (the seed's skip)."""
        if len(text) > self.settings.max_text_chars:
            raise InvalidArgument(f"text has {len(text)} characters; the limit is {self.settings.max_text_chars}")
        rate = check_sample_rate(sample_rate_hz) if sample_rate_hz else SAMPLE_RATE
        speed = self.settings.default_speed if speed is None else speed
        SPEED.check("speed", speed)
        voice = voice or self.settings.default_voice
        self.voices.pack(voice)
        if len(text.strip()) < self.settings.min_chars or not any(c.isalnum() for c in text):
            return None
        return SpeechRequest(text.strip(), voice, speed, rate, more_follows)

    async def stream(self, request: SpeechRequest, timeout_s: float | None = None) -> AsyncIterator[SpeechChunk]:
        """Speech clause by clause: each clause's audio is yielded as soon as it is synthesised."""
        deadline = time.monotonic() + min(self.settings.timeout_s, timeout_s or self.settings.timeout_s)
        clauses = split_clauses(request.text)
        resampler = StreamResampler(SAMPLE_RATE, request.sample_rate_hz)
        async with self.pool.slot(deadline) as slot:
            for index, text in enumerate(clauses):
                voice, speed = request.voice, request.speed
                if self.settings.emotional:
                    delivery = choose_delivery(text, voice, speed, self.settings.mood_voices)
                    voice, speed = delivery.voice, delivery.speed
                    log.info("emotional delivery", extra={"mood": delivery.mood, "voice": voice, "speed": speed})
                started = time.perf_counter()
                audio = await slot.run(functools.partial(self.render, text, voice, speed), deadline)
                compute_ms = (time.perf_counter() - started) * 1000
                audio = self.edges(audio, pause_after=index < len(clauses) - 1 or request.more_follows)
                pcm = resampler.process(to_pcm16(audio), last=index == len(clauses) - 1)
                yield SpeechChunk(pcm.tobytes(), text, request.sample_rate_hz, index, compute_ms, voice, speed)

    def edges(self, audio: np.ndarray, pause_after: bool) -> np.ndarray:
        """A clause's audio with natural edges; one that more speech follows ends with the pause."""
        s = self.settings
        pause = max(0, s.clause_pause_ms - s.lead_ms - s.tail_ms) if pause_after else 0
        return shape(audio, SAMPLE_RATE, s.lead_ms, s.tail_ms, pause)

    def render(self, text: str, voice: str, speed: float) -> np.ndarray:
        """Blocking: one clause to 24 kHz float audio (split further if over the model's context)."""
        phonemes = self.phonemizer.phonemize(text, british=self.voices.info(voice).british)
        count = count_phonemes(self.engine.vocab, phonemes)
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        if count > MAX_PHONEMES:
            pieces = split_clauses(text, max_chars=max(10, len(text) // 2))
            return np.concatenate([self.render(piece, voice, speed) for piece in pieces])
        return self.engine.synthesize(phonemes, self.voices.pack(voice), speed)

    def close(self) -> None:
        self.pool.close()
