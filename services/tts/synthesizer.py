"""Text to streamed speech: validation, clause splitting, phonemes, synthesis, resampling.
Plain asyncio; no gRPC in here."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter

from services.common.audio import StreamResampler, check_sample_rate, to_pcm16
from services.common.clauses import split_clauses
from services.common.errors import InvalidArgument
from services.common.limits import SPEED
from services.common.load import StageLoad
from services.common.slots import SlotPool
from services.tts.config import TtsSettings
from services.tts.edges import shape
from services.tts.emotion import choose_delivery
from services.tts.engine import SAMPLE_RATE, Run, SpeechEngine, Stopped, count_phonemes
from services.tts.normalize import speakable
from services.tts.phonemes import EnglishPhonemizer
from services.tts.pieces import IN_TIME_SHARE, MIN_PIECE_PHONEMES, Piece, PieceCost, first_piece, plan_pieces
from services.tts.voices import VoiceBank

log = logging.getLogger(__name__)
STOPPED = Counter("voice_tts_synthesis_stopped_total", "Pieces of synthesis stopped part-way: their caller went, "
                  "or they ran past the budget")


@dataclass(frozen=True)
class SpeechChunk:
    pcm: bytes  # PCM16LE mono at sample_rate_hz
    text: str
    sample_rate_hz: int
    segment_index: int
    compute_ms: float
    voice: str
    speed: float
    queue_ms: float = 0.0  # waited for the slot


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: str
    speed: float
    sample_rate_hz: int
    more_follows: bool = False  # more of the utterance comes in a later request: end with the pause
    need_in_s: float = 0.0  # when the listener needs the first sample, from now


class Synthesizer:
    def __init__(self, settings: TtsSettings, engine: SpeechEngine, voices: VoiceBank,
                 phonemizer: EnglishPhonemizer) -> None:
        self.settings = settings
        self.engine = engine
        self.voices = voices
        self.phonemizer = phonemizer
        self.pool = SlotPool(settings.slots, settings.max_queue, "tts", settings.load_window_s)
        self.cost = PieceCost()
        # Phonemes are made beside the synthesis slot, never in it (one thread: the G2P keeps state).
        self._g2p = ThreadPoolExecutor(max_workers=1, thread_name_prefix="g2p")

    def check(self, text: str, voice: str, speed: float | None, sample_rate_hz: int,
              more_follows: bool = False, need_in_ms: int = 0) -> SpeechRequest | None:
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
        language = self.voices.info(voice).language
        spoken = speakable(text, language)
        if not any(c.isalnum() for c in spoken.text):  # words there were, but none this voice can say
            scripts = ", ".join(f"{n} {script}" for script, n in sorted(spoken.dropped.items()))
            raise InvalidArgument(f"voice {voice} ({language}) cannot speak any of this text: it has {scripts} "
                                  "characters and nothing else to say")
        return SpeechRequest(text.strip(), voice, speed, rate, more_follows, need_in_ms / 1000)

    async def stream(self, request: SpeechRequest, caller_deadline: float | None = None) -> AsyncIterator[SpeechChunk]:
        """Speech piece by piece, each yielded as soon as it is synthesised. Each piece waits for the
        slot keyed by when its listener needs it (the request's need time plus the audio before it),
        until the caller's deadline; once running it has `timeout_s`."""
        s = self.settings
        now = time.monotonic()
        need_by = now + request.need_in_s
        wait_until = caller_deadline if caller_deadline is not None else need_by + s.timeout_s
        language = self.voices.info(request.voice).language
        clauses = split_clauses(speakable(request.text, language).text)
        resampler = StreamResampler(SAMPLE_RATE, request.sample_rate_hz)
        loop = asyncio.get_running_loop()
        heard_s = 0.0  # audio yielded so far: the next piece is needed that much later
        segment = 0
        for index, text in enumerate(clauses):
            voice, speed = request.voice, request.speed
            if s.emotional:
                delivery = choose_delivery(text, voice, speed, s.mood_voices)
                voice, speed = delivery.voice, delivery.speed
                log.info("emotional delivery", extra={"mood": delivery.mood, "voice": voice, "speed": speed})
            pieces = await loop.run_in_executor(self._g2p, self.plan, text, voice)
            while pieces:
                piece = pieces.pop(0)
                # Audio is ahead of the listener: a piece that would not be ready in time is cut.
                limit = self.in_time_limit(piece, need_by + heard_s) if heard_s > 0 or request.need_in_s > 0 else None
                if limit is not None and (cut := await loop.run_in_executor(self._g2p, self.cut, piece, voice, limit)):
                    piece, rest = cut
                    pieces = await loop.run_in_executor(self._g2p, self.plan, rest, voice) + pieces
                last = index == len(clauses) - 1 and not pieces
                audio, compute_ms, queue_ms = await self._synthesize(piece, voice, speed, need_by + heard_s,
                                                                     wait_until, caller_deadline, segment > 0)
                ends_clause = not pieces
                audio = self.edges(audio, pause_after=(ends_clause and not last) or (last and request.more_follows))
                heard_s += len(audio) / SAMPLE_RATE  # as heard: the model's padding trimmed, the pause kept
                pcm = resampler.process(to_pcm16(audio), last=last)
                yield SpeechChunk(pcm.tobytes(), piece.text, request.sample_rate_hz, segment, compute_ms, voice, speed,
                                  queue_ms)
                segment += 1

    async def _synthesize(self, piece: Piece, voice: str, speed: float, need_by: float, wait_until: float,
                          caller_deadline: float | None, continuing: bool) -> tuple[np.ndarray, float, float]:
        """One piece in the slot: (audio, compute ms, queue ms). A caller that goes stops it."""
        async with self.pool.slot(wait_until, priority=need_by, continuing=continuing,
                                  need_by=need_by) as slot:
            started = time.perf_counter()
            run_until = time.monotonic() + self.settings.timeout_s
            if caller_deadline is not None:
                run_until = min(run_until, caller_deadline)
            run = Run()
            audio = await slot.run(functools.partial(self._run, piece, self.voices.pack(voice), speed, run), run_until,
                                   stop=run.stop)
            compute_ms = (time.perf_counter() - started) * 1000
        self.cost.observe(piece.count, compute_ms)
        return audio, compute_ms, slot.queued_s * 1000

    def _run(self, piece: Piece, pack: np.ndarray, speed: float, run: Run) -> np.ndarray:
        """Blocking, in the slot's thread."""
        try:
            return self.engine.synthesize(piece.phonemes, pack, speed, run)
        except Stopped:
            STOPPED.inc()
            raise

    def plan(self, text: str, voice: str) -> list[Piece]:
        """Blocking: a clause as pieces short enough to synthesise within a share of the budget."""
        s = self.settings
        limit = self.cost.max_phonemes(s.timeout_s * 1000 * s.piece_share, s.max_clause_phonemes)
        return plan_pieces(text, limit, *self._phonemes(voice))

    def in_time_limit(self, piece: Piece, needed_at: float) -> int | None:
        """When `piece` would not be synthesised before the listener needs it (at clock
        `needed_at`), the most phonemes a first piece of it may have to be; else None."""
        budget_ms = (needed_at - time.monotonic()) * 1000 * IN_TIME_SHARE
        if self.cost.per_phoneme_ms <= 0 or self.cost.predict_ms(piece.count) <= budget_ms:
            return None
        limit = self.cost.fitting(budget_ms)
        # No short piece arrives in time either: one wait beats many short pieces' fixed costs.
        return limit if limit >= MIN_PIECE_PHONEMES else None

    def cut(self, piece: Piece, voice: str, limit: int) -> tuple[Piece, str] | None:
        """Blocking: the first words of `piece` within `limit` phonemes, and the words left."""
        return first_piece(piece, limit, *self._phonemes(voice))

    def _phonemes(self, voice: str) -> tuple[Callable[[str], str], Callable[[str], int]]:
        """The voice's phonemizer and the model's phoneme count."""
        british = self.voices.info(voice).british
        return (lambda t: self.phonemizer.phonemize(t, british=british),
                lambda p: count_phonemes(self.engine.vocab, p))

    def edges(self, audio: np.ndarray, pause_after: bool) -> np.ndarray:
        """A piece's audio with natural edges; one that more speech follows ends with the pause."""
        s = self.settings
        pause = max(0, s.clause_pause_ms - s.lead_ms - s.tail_ms) if pause_after else 0
        return shape(audio, SAMPLE_RATE, s.lead_ms, s.tail_ms, pause)

    def render(self, text: str, voice: str, speed: float) -> np.ndarray:
        """Blocking, outside any slot (warm-up, tools): a text to 24 kHz float audio, piece by piece."""
        language = self.voices.info(voice).language
        parts = []
        for clause in split_clauses(speakable(text, language).text):
            for piece in self.plan(clause, voice):
                started = time.perf_counter()
                parts.append(self.engine.synthesize(piece.phonemes, self.voices.pack(voice), speed))
                self.cost.observe(piece.count, (time.perf_counter() - started) * 1000)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def load(self) -> StageLoad:
        return self.pool.load()

    def close(self) -> None:
        self.pool.close()
        self._g2p.shutdown(wait=False, cancel_futures=True)
