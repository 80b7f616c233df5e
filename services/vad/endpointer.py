"""Streaming end-of-speech detection on webrtcvad. Plain Python: no gRPC in here.

Audio of any chunking goes in; events with sample offsets on the caller's input timeline come
out. The same audio gives the same events however it is cut, because everything downstream of
the raw bytes runs on fixed-size blocks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import webrtcvad

from services.common.audio import PCM16, SAMPLE_BYTES, FrameChunker, StreamResampler, check_sample_rate
from services.common.errors import InvalidArgument
from services.common.limits import END_SILENCE_MS

# Rates webrtcvad analyses directly; any other input rate is resampled to 16 kHz.
NATIVE_RATES = (8000, 16000, 32000, 48000)
FRAME_MS = (10, 20, 30)
# A speech candidate survives unvoiced gaps this short (stop consonants, breaths).
CANDIDATE_GAP_MS = 90
# webrtcvad keeps saying "speech" for up to ~90 ms after speech stops (its hangover). A frame
# it calls voiced only counts when it is also within this many dB of the utterance's loudest
# frame, so the end offset and the silence count start where the voice really stopped.
HANGOVER_GATE_DB = 40.0
# Frames quieter than this are never speech (digital silence, a muted microphone).
FLOOR_DBFS = -70.0


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


@dataclass(frozen=True)
class EndpointerConfig:
    sample_rate_hz: int
    aggressiveness: int = 3
    frame_ms: int = 30
    min_speech_ms: int = 200
    end_silence_ms: int = 800
    pause_ms: int = 200
    pre_roll_ms: int = 300

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


class _State(enum.Enum):
    SILENCE = 0
    CANDIDATE = 1
    SPEECH = 2
    PAUSED = 3


class Endpointer:
    """Feed PCM16LE mono bytes with push(); call finish() when the input ends."""

    def __init__(self, config: EndpointerConfig) -> None:
        self.config = config
        rate = config.sample_rate_hz
        self.vad_rate = rate if rate in NATIVE_RATES else 16000
        self._vad = webrtcvad.Vad(config.aggressiveness)
        self._frame = self.vad_rate * config.frame_ms // 1000
        self._frames = FrameChunker(self._frame * SAMPLE_BYTES)
        self._resampler = None if self.vad_rate == rate else StreamResampler(rate, self.vad_rate)
        # Resampling runs on fixed input blocks (~10 ms) so chunking cannot change its output.
        self._block = FrameChunker(max(1, rate // 100) * SAMPLE_BYTES) if self._resampler else None
        self._pos = 0  # vad-rate samples analysed so far
        self._state = _State.SILENCE
        self._start = 0  # vad samples: first voiced frame of the utterance or candidate
        self._voiced_end = 0  # vad samples: end of the last voiced frame
        self._voiced_total = 0  # vad samples voiced in the current candidate
        self._peak_db = FLOOR_DBFS  # loudest voiced frame of the current utterance
        self._ms = self.vad_rate // 1000

    def push(self, data: bytes) -> list[SpeechEvent]:
        if self._resampler is None or self._block is None:
            return self._analyse(data)
        events: list[SpeechEvent] = []
        for block in self._block.push(data):
            out = self._resampler.process(np.frombuffer(block, dtype=PCM16))
            events += self._analyse(out.tobytes())
        return events

    def finish(self) -> list[SpeechEvent]:
        """End of input: an utterance in progress ends at its last voiced frame."""
        events: list[SpeechEvent] = []
        if self._resampler is not None and self._block is not None:
            rest = self._block.flush()
            tail = np.frombuffer(rest[: len(rest) - len(rest) % SAMPLE_BYTES], dtype=PCM16)
            events += self._analyse(self._resampler.process(tail, last=True).tobytes())
        if self._state in (_State.SPEECH, _State.PAUSED):
            events.append(self._event(EventKind.ENDED, self._pos))
        self._state = _State.SILENCE
        return events

    def _analyse(self, data: bytes) -> list[SpeechEvent]:
        events: list[SpeechEvent] = []
        for frame in self._frames.push(data):
            start, self._pos = self._pos, self._pos + self._frame
            voiced = self._vad.is_speech(frame, self.vad_rate) and self._loud_enough(frame)
            event = self._step(voiced, start, self._pos)
            if event is not None:
                events.append(event)
        return events

    def _loud_enough(self, frame: bytes) -> bool:
        samples = np.frombuffer(frame, dtype=PCM16).astype(np.float32)
        level = 10 * np.log10(float(np.mean(samples * samples)) / 32768.0**2 + 1e-12)
        if level < max(FLOOR_DBFS, self._peak_db - HANGOVER_GATE_DB):
            return False
        self._peak_db = max(self._peak_db, level)
        return True

    def _step(self, voiced: bool, frame_start: int, frame_end: int) -> SpeechEvent | None:
        cfg, ms = self.config, self._ms
        state = self._state
        if voiced:
            if state is _State.SILENCE:
                self._state, self._start, self._voiced_total = _State.CANDIDATE, frame_start, 0
                self._peak_db = FLOOR_DBFS
            self._voiced_end = frame_end
            if self._state is _State.CANDIDATE:
                self._voiced_total += self._frame
                if self._voiced_total >= cfg.min_speech_ms * ms:
                    self._state = _State.SPEECH
                    return self._event(EventKind.STARTED, frame_end)
            elif state is _State.PAUSED:
                self._state = _State.SPEECH
                return self._event(EventKind.RESUMED, frame_end)
            return None
        silence = frame_end - self._voiced_end
        if state is _State.CANDIDATE and silence >= CANDIDATE_GAP_MS * ms:
            self._state = _State.SILENCE
        elif state is _State.SPEECH and silence >= cfg.pause_ms * ms and cfg.pause_ms < cfg.end_silence_ms:
            self._state = _State.PAUSED
            return self._event(EventKind.PAUSED, frame_end)
        elif state in (_State.SPEECH, _State.PAUSED) and silence >= cfg.end_silence_ms * ms:
            self._state = _State.SILENCE
            return self._event(EventKind.ENDED, frame_end)
        return None

    def _event(self, kind: EventKind, decided_at: int) -> SpeechEvent:
        pre_roll = self.config.pre_roll_ms * self._ms
        return SpeechEvent(
            kind=kind,
            start_sample=self._to_input(max(0, self._start - pre_roll)),
            end_sample=self._to_input(self._voiced_end),
            decided_at_sample=self._to_input(decided_at),
        )

    def _to_input(self, vad_samples: int) -> int:
        """vad-rate samples -> samples on the caller's input timeline."""
        rate = self.config.sample_rate_hz
        return vad_samples if rate == self.vad_rate else round(vad_samples * rate / self.vad_rate)
