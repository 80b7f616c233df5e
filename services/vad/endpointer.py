"""Streaming end-of-turn detection. Plain Python: no gRPC in here.

Audio of any chunking goes in; events with sample offsets on the caller's input timeline come
out. The same audio gives the same events however it is cut, because everything downstream of
the raw bytes runs on fixed-size frames. With the `smart_turn` detector the end of a turn is a
question for the model: `push()` also returns an `Ask` (at most one outstanding), the caller runs
the model off its event loop and hands the probability back with `answer()`, at whatever point
of the stream it arrives.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from services.common.audio import PCM16, SAMPLE_BYTES, FrameChunker, StreamResampler, check_sample_rate
from services.common.errors import InvalidArgument
from services.common.limits import END_SILENCE_MS
from services.vad import voice as voices
from services.vad.smart_turn import SAMPLE_RATE_HZ as TURN_RATE
from services.vad.smart_turn import WINDOW_SAMPLES
from services.vad.turn_policy import Detector, EndReason, TurnPolicy
from services.vad.voice import Backend, NoiseFloor, Spread, Voice, level_db

FRAME_MS = (10, 20, 30)
# A speech candidate survives unvoiced gaps this short (stop consonants, breaths).
CANDIDATE_GAP_MS = 90
# webrtcvad keeps saying "speech" for up to ~90 ms after speech stops (its hangover). A frame
# it calls voiced only counts when it is also within this many dB of the utterance's loudest
# frame, so the end offset and the silence count start where the voice really stopped.
HANGOVER_GATE_DB = 40.0
# Frames quieter than this are never speech (digital silence, a muted microphone).
FLOOR_DBFS = -70.0
# Silence frames this sure of voice make a pause "not clean" (breath, murmur, a far talker).
UNCLEAN_CONFIDENCE = 0.3
# Once the voice has been silent this long the speaker is in a pause, and taking the turn back
# takes more than a stray frame: RESUME_MS of voice within RESUME_BELOW_PEAK_DB of the
# utterance's loudest frame (a far talker, babble or a clatter does not resume a turn).
PAUSE_GUARD_MS = 250
# Speech is modulated (syllables): over MODULATION_MS its frame levels spread by several dB, steady
# noise of any colour by well under one. Voice that is this flat neither starts nor resumes a turn.
MODULATION_MS = 210
MIN_MODULATION_DB = 1.0
RESUME_MS = 90
RESUME_BELOW_PEAK_DB = 30.0
# A voice keeps the turn only while it is near the speaker's own level: frames more than
# STRONG_BELOW_PEAK_DB under the utterance's peak count for WEAK_TAIL_MS after the last frame that
# is not (soft word endings do); beyond that they are taken for what follows the speaker (babble,
# a far talker), and the silence count runs.
STRONG_BELOW_PEAK_DB = 20.0
WEAK_TAIL_MS = 300


class EventKind(enum.Enum):
    STARTED = "started"
    PAUSED = "paused"
    RESUMED = "resumed"
    ENDED = "ended"


@dataclass(frozen=True)
class SpeechEvent:
    kind: EventKind
    start_sample: int
    end_sample: int
    decided_at_sample: int
    probability: float | None = None  # the model's latest answer (PAUSED, ENDED; smart_turn only)
    voiced_ms: float = 0.0  # voiced time of the utterance so far
    reason: EndReason | None = None  # ENDED only


@dataclass(frozen=True)
class Ask:
    """The end-of-turn model is wanted on `audio` (16 kHz float32, the utterance's last <= 8 s)."""

    utterance: int
    audio: np.ndarray = field(repr=False)
    silence_ms: float


@dataclass(frozen=True)
class EndpointerConfig:
    sample_rate_hz: int
    aggressiveness: int = 3
    frame_ms: int = 30
    min_speech_ms: int = 200
    end_silence_ms: int = 800
    pause_ms: int = 200
    pre_roll_ms: int = 300
    detector: Detector = Detector.SILENCE
    backend: Backend = Backend.WEBRTC
    silero_threshold: float = 0.5
    snr_db: float = 0.0  # 0: no noise-floor gate (the seed's behaviour)
    floor_window_ms: int = 1500
    policy: TurnPolicy = TurnPolicy()
    hint_at_ask: bool = False  # smart_turn: a PAUSED hint as a pause is first asked about

    def __post_init__(self) -> None:
        check_sample_rate(self.sample_rate_hz)
        if not 0 <= self.aggressiveness <= 3:
            raise InvalidArgument(f"aggressiveness={self.aggressiveness} is not supported: use 0, 1, 2 or 3")
        if self.frame_ms not in FRAME_MS:
            raise InvalidArgument(f"frame_ms={self.frame_ms} is not supported: use 10, 20 or 30")
        if not 0 <= self.min_speech_ms <= 5000:
            raise InvalidArgument(f"min_speech_ms={self.min_speech_ms} is out of range: use 0 to 5000")
        END_SILENCE_MS.check("end_silence_ms", self.end_silence_ms)
        if not 0 < self.pause_ms <= 10000:
            raise InvalidArgument(f"pause_ms={self.pause_ms} is out of range: use 1 to 10000")
        if not 0 <= self.pre_roll_ms <= 5000:
            raise InvalidArgument(f"pre_roll_ms={self.pre_roll_ms} is out of range: use 0 to 5000")
        if not 0.0 <= self.snr_db <= 40.0:
            raise InvalidArgument(f"snr_db={self.snr_db:g} is out of range: use 0 (off) to 40")
        if not 100 <= self.floor_window_ms <= 10000:
            raise InvalidArgument(f"floor_window_ms={self.floor_window_ms} is out of range: use 100 to 10000")
        if not 0.0 < self.silero_threshold < 1.0:
            raise InvalidArgument(f"silero_threshold={self.silero_threshold:g} is out of range: use 0 to 1")


class _State(enum.Enum):
    SILENCE = 0
    CANDIDATE = 1
    SPEECH = 2
    PAUSED = 3


class Endpointer:
    """Feed PCM16LE mono bytes with push(); answer its asks with answer(); call finish() at the end."""

    def __init__(self, config: EndpointerConfig, silero: voices.SileroModel | None = None) -> None:
        self.config = config
        rate = config.sample_rate_hz
        self._voice = _voice(config, silero)
        self._threshold = config.silero_threshold if config.backend is Backend.SILERO else 0.5
        self.vad_rate = self._voice.rate
        self._frame = self._voice.frame
        self._frames = FrameChunker(self._frame * SAMPLE_BYTES)
        self._resampler = None if self.vad_rate == rate else StreamResampler(rate, self.vad_rate)
        # Resampling runs on fixed input blocks (~10 ms) so chunking cannot change its output.
        self._block = FrameChunker(max(1, rate // 100) * SAMPLE_BYTES) if self._resampler else None
        self._ms = self.vad_rate / 1000
        frame_ms = self._frame / self._ms
        self._gate = NoiseFloor(max(1, round(config.floor_window_ms / frame_ms)), config.snr_db, FLOOR_DBFS) \
            if config.snr_db > 0 else None
        self._smart = config.detector is Detector.SMART_TURN
        # The utterance as the model hears it: 16 kHz float32, the last 8 s plus the silence after.
        self._to_turn_rate = StreamResampler(self.vad_rate, TURN_RATE) if self._smart and self.vad_rate != TURN_RATE \
            else None
        self._heard = _Ring(WINDOW_SAMPLES + int(config.policy.fallback_ms * TURN_RATE / 1000)) if self._smart \
            else _Ring(0)
        self._pos = 0  # vad-rate samples analysed so far
        self._state = _State.SILENCE
        self._start = 0  # vad samples: first voiced frame of the utterance or candidate
        self._voiced_end = 0  # vad samples: end of the last voiced frame
        self._voiced_total = 0  # vad samples voiced in the current utterance (candidate included)
        self._peak_db = FLOOR_DBFS  # loudest voiced frame of the current utterance
        self._levels = Spread(max(2, round(MODULATION_MS / frame_ms)))
        self._resume_run = 0  # vad samples of voice in the current try at taking the turn back
        self._resume_last = 0
        self._strong_end = 0  # vad samples: end of the last voiced frame near the utterance's peak
        self._utterance = 0
        self._asking = False
        self._next_ask_ms = 0.0
        self._answers: list[float] = []
        self._clean = True

    # --- input ---------------------------------------------------------------------------------

    def push(self, data: bytes) -> list[SpeechEvent | Ask]:
        if self._resampler is None or self._block is None:
            return self._analyse(data)
        out: list[SpeechEvent | Ask] = []
        for block in self._block.push(data):
            resampled = self._resampler.process(np.frombuffer(block, dtype=PCM16))
            out += self._analyse(resampled.tobytes())
        return out

    def finish(self) -> list[SpeechEvent]:
        """End of input: an utterance in progress ends at its last voiced frame."""
        out: list[SpeechEvent | Ask] = []
        if self._resampler is not None and self._block is not None:
            rest = self._block.flush()
            tail = np.frombuffer(rest[: len(rest) - len(rest) % SAMPLE_BYTES], dtype=PCM16)
            out += self._analyse(self._resampler.process(tail, last=True).tobytes())
        if self._state in (_State.SPEECH, _State.PAUSED):
            out.append(self._end(self._pos, EndReason.INPUT_END))
        self._state = _State.SILENCE
        return [item for item in out if isinstance(item, SpeechEvent)]

    def answer(self, ask: Ask, probability: float | None) -> list[SpeechEvent]:
        """The model's answer to `ask`, applied where the stream is now. None: no answer (the
        model was too busy); the silence keeps growing and the next ask or the fallback decides."""
        if ask.utterance != self._utterance:
            return []  # that utterance already ended (fallback, input end) or speech resumed
        self._asking = False  # voice since the ask, or the end of that utterance, changed the id above
        if probability is None:
            return []
        self._answers.append(probability)
        if self.config.policy.ends(probability, ask.silence_ms):
            return [self._end(self._pos, EndReason.MODEL, probability)]
        self._state = _State.PAUSED
        return [self._event(EventKind.PAUSED, self._pos, probability)]

    # --- frames --------------------------------------------------------------------------------

    def _analyse(self, data: bytes) -> list[SpeechEvent | Ask]:
        out: list[SpeechEvent | Ask] = []
        for frame in self._frames.push(data):
            start, self._pos = self._pos, self._pos + self._frame
            if self._smart:
                self._hear(frame)
            confidence = self._voice.confidence(frame)
            level = level_db(frame)
            above_floor = self._gate.admit(level) if self._gate is not None else True
            self._levels.push(level)
            voiced = confidence >= self._threshold and above_floor and self._modulated() and self._loud_enough(level)
            if voiced and not self._takes_turn_back(level, start):
                voiced, self._clean = False, False
            elif not voiced and confidence >= UNCLEAN_CONFIDENCE and above_floor:
                self._clean = False
            out += self._step(voiced, start, self._pos)
        return out

    def _hear(self, frame: bytes) -> None:
        pcm = np.frombuffer(frame, dtype=PCM16)
        if self._to_turn_rate is not None:
            pcm = self._to_turn_rate.process(pcm)
        self._heard.write(pcm.astype(np.float32) / 32768.0)

    def _takes_turn_back(self, level: float, frame_start: int) -> bool:
        """Does this voiced frame hold (or, in a pause, take back) the turn? Only voice near the
        utterance's own level does: see STRONG_BELOW_PEAK_DB and RESUME_BELOW_PEAK_DB."""
        if self._gate is None:
            return True  # no gate: the seed's behaviour, any voiced frame holds or resumes the turn
        if level >= self._peak_db - STRONG_BELOW_PEAK_DB:
            self._strong_end = frame_start + self._frame
        if self._state not in (_State.SPEECH, _State.PAUSED):
            return True
        if frame_start - self._voiced_end < PAUSE_GUARD_MS * self._ms:  # still speaking
            return frame_start - self._strong_end <= WEAK_TAIL_MS * self._ms
        if level < self._peak_db - RESUME_BELOW_PEAK_DB:
            return False
        if frame_start - self._resume_last > CANDIDATE_GAP_MS * self._ms:
            self._resume_run = 0
        self._resume_run += self._frame
        self._resume_last = frame_start + self._frame
        if self._resume_run < RESUME_MS * self._ms:
            return False
        self._resume_run = 0
        self._strong_end = frame_start + self._frame
        return True

    def _modulated(self) -> bool:
        return self._gate is None or self._levels.spread() >= MIN_MODULATION_DB

    def _loud_enough(self, level: float) -> bool:
        if level < max(FLOOR_DBFS, self._peak_db - HANGOVER_GATE_DB):
            return False
        self._peak_db = max(self._peak_db, level)
        return True

    def _silence_ms(self) -> float:
        return (self._pos - self._voiced_end) / self._ms

    def _step(self, voiced: bool, frame_start: int, frame_end: int) -> list[SpeechEvent | Ask]:
        cfg = self.config
        state = self._state
        if voiced:
            if state is _State.SILENCE:
                self._state, self._start, self._voiced_total = _State.CANDIDATE, frame_start, 0
                self._peak_db = FLOOR_DBFS
            self._voiced_end = frame_end
            self._voiced_total += self._frame
            if self._state is _State.CANDIDATE:
                if self._voiced_total >= cfg.min_speech_ms * self._ms:
                    self._state = _State.SPEECH
                    self._new_utterance()
                    return [self._event(EventKind.STARTED, frame_end)]
            elif state is _State.PAUSED:
                self._state = _State.SPEECH
                self._new_pause()
                return [self._event(EventKind.RESUMED, frame_end)]
            elif self._asking or self._answers:
                self._new_pause()  # voice within the pause before PAUSED was sent: the asks start over
            return []
        silence = self._silence_ms()
        if state is _State.CANDIDATE and silence >= CANDIDATE_GAP_MS:
            self._state = _State.SILENCE
        elif state not in (_State.SPEECH, _State.PAUSED):
            pass
        elif self._smart:
            return self._smart_step(silence, frame_end)
        elif state is _State.SPEECH and silence >= cfg.pause_ms and cfg.pause_ms < cfg.end_silence_ms:
            self._state = _State.PAUSED
            return [self._event(EventKind.PAUSED, frame_end)]
        elif silence >= cfg.end_silence_ms:
            return [self._end(frame_end, EndReason.SILENCE)]
        return []

    def _smart_step(self, silence: float, frame_end: int) -> list[SpeechEvent | Ask]:
        policy = self.config.policy
        if silence >= policy.fallback(self._answers, self._clean):
            return [self._end(frame_end, EndReason.FALLBACK, self._answers[-1] if self._answers else None)]
        due = max(policy.ask_after_ms, self._next_ask_ms)  # the schedule's point, not the frame's
        if self._asking or silence < due or due > policy.ask_until_ms:
            return []
        self._asking = True
        self._next_ask_ms = due + policy.ask_every_ms
        ask = Ask(self._utterance, self._heard.last(WINDOW_SAMPLES + int(silence * TURN_RATE / 1000)), silence)
        if self.config.hint_at_ask and self._state is _State.SPEECH:  # a hint now, the model's answer follows
            self._state = _State.PAUSED
            return [self._event(EventKind.PAUSED, frame_end), ask]
        return [ask]

    def _new_utterance(self) -> None:
        self._utterance += 1
        self._new_pause()

    def _new_pause(self) -> None:
        if self._asking:
            self._utterance += 1  # the outstanding ask is void: its answer must not end this pause
        self._asking, self._next_ask_ms, self._answers, self._clean = False, 0.0, [], True

    def _end(self, decided_at: int, reason: EndReason, probability: float | None = None) -> SpeechEvent:
        self._state = _State.SILENCE
        self._utterance += 1
        self._asking = False
        return self._event(EventKind.ENDED, decided_at, probability, reason)

    def _event(self, kind: EventKind, decided_at: int, probability: float | None = None,
               reason: EndReason | None = None) -> SpeechEvent:
        pre_roll = int(self.config.pre_roll_ms * self._ms)
        return SpeechEvent(
            kind=kind,
            start_sample=self._to_input(max(0, self._start - pre_roll)),
            end_sample=self._to_input(self._voiced_end),
            decided_at_sample=self._to_input(decided_at),
            probability=probability,
            reason=reason,
            voiced_ms=self._voiced_total / self._ms,
        )

    def _to_input(self, vad_samples: int) -> int:
        """vad-rate samples -> samples on the caller's input timeline."""
        rate = self.config.sample_rate_hz
        return vad_samples if rate == self.vad_rate else round(vad_samples * rate / self.vad_rate)


class _Ring:
    """The last `size` samples, without copying the whole buffer on every frame."""

    def __init__(self, size: int) -> None:
        self._data = np.zeros(size, dtype=np.float32)
        self._written = 0

    def write(self, x: np.ndarray) -> None:
        size = len(self._data)
        x = x[-size:]
        at = self._written % size
        first = min(len(x), size - at)
        self._data[at : at + first] = x[:first]
        self._data[: len(x) - first] = x[first:]
        self._written += len(x)

    def last(self, n: int) -> np.ndarray:
        n = min(n, self._written, len(self._data))
        end = self._written % len(self._data)
        return np.concatenate([self._data[end - n :] if n > end else self._data[:0], self._data[max(0, end - n) : end]])


def _voice(config: EndpointerConfig, silero: voices.SileroModel | None) -> Voice:
    if config.backend is Backend.SILERO:
        if silero is None:
            raise InvalidArgument("backend=silero needs the Silero model, which this service has not loaded")
        return voices.SileroVoice(silero)
    return voices.WebrtcVoice(config.aggressiveness, config.frame_ms, config.sample_rate_hz)
