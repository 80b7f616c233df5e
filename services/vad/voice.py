"""Voice detection per frame: webrtcvad or Silero VAD, behind one small interface, and the
noise-floor gate that both sit behind (noise that rises after speech, or a room's coloured tone,
passes either detector; it does not stand above its own floor)."""

from __future__ import annotations

import enum
import math
from collections import deque
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import webrtcvad

from services.common.audio import PCM16

# Rates webrtcvad analyses directly; any other input rate is resampled to 16 kHz.
WEBRTC_RATES = (8000, 16000, 32000, 48000)
# Silero VAD v5 takes 512 samples at 16 kHz with the previous 64 as context.
SILERO_RATE = 16000
SILERO_FRAME = 512
SILERO_CONTEXT = 64


class Backend(enum.StrEnum):
    WEBRTC = "webrtc"
    SILERO = "silero"


class Voice(Protocol):
    rate: int  # the rate frames are analysed at
    frame: int  # samples per frame

    def confidence(self, frame: bytes) -> float:
        """0..1: how sure the detector is that this frame is voice."""


class WebrtcVoice:
    def __init__(self, aggressiveness: int, frame_ms: int, input_rate: int) -> None:
        self.rate = input_rate if input_rate in WEBRTC_RATES else 16000
        self.frame = self.rate * frame_ms // 1000
        self._vad = webrtcvad.Vad(aggressiveness)

    def confidence(self, frame: bytes) -> float:
        return 1.0 if self._vad.is_speech(frame, self.rate) else 0.0


class SileroModel:
    """The shared ONNX session (loaded once per process); each stream keeps its own state."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session: Any = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class SileroVoice:
    def __init__(self, model: SileroModel) -> None:
        self.rate, self.frame = SILERO_RATE, SILERO_FRAME
        self._session = model.session
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, SILERO_CONTEXT), dtype=np.float32)
        self._sr = np.array(SILERO_RATE, dtype=np.int64)

    def confidence(self, frame: bytes) -> float:
        x = (np.frombuffer(frame, dtype=PCM16).astype(np.float32) / 32768.0)[None, :]
        x = np.concatenate([self._context, x], axis=1)
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[:, -SILERO_CONTEXT:]
        return float(np.asarray(out).reshape(-1)[0])


class NoiseFloor:
    """The quietest frame level over the last `window` frames (starting at `start_db`, so a
    stream's first moments behave as in a quiet room). A frame counts as voice only when it stands
    `snr_db` above that floor: steady noise, however it sounds, sets its own floor within one window."""

    def __init__(self, window: int, snr_db: float, start_db: float) -> None:
        self.snr_db = snr_db
        self._window = window
        self._index = 0
        self._mins: deque[tuple[int, float]] = deque([(0, start_db)])  # increasing levels: a sliding minimum

    @property
    def floor_db(self) -> float:
        return self._mins[0][1]

    def admit(self, level_db: float) -> bool:
        """Is this frame above the floor (as it stood before this frame)? Then take it into the floor."""
        above = level_db >= self.floor_db + self.snr_db
        self._index += 1
        while self._mins and self._mins[-1][1] >= level_db:
            self._mins.pop()
        self._mins.append((self._index, level_db))
        while self._mins[0][0] <= self._index - self._window:
            self._mins.popleft()
        return above


class Spread:
    """Standard deviation of the last `window` values, kept as running sums (runs on every frame)."""

    def __init__(self, window: int) -> None:
        self._values: deque[float] = deque(maxlen=window)
        self._sum = self._squares = 0.0

    def push(self, value: float) -> None:
        if len(self._values) == self._values.maxlen:
            old = self._values[0]
            self._sum -= old
            self._squares -= old * old
        self._values.append(value)
        self._sum += value
        self._squares += value * value

    def spread(self) -> float:
        n = len(self._values)
        if n == 0:
            return 0.0
        mean = self._sum / n
        return math.sqrt(max(0.0, self._squares / n - mean * mean))


def level_db(frame: bytes) -> float:
    samples = np.frombuffer(frame, dtype=PCM16).astype(np.float32)
    power = float(np.dot(samples, samples)) / max(1, len(samples))  # one BLAS call: this runs on every frame
    return 10 * math.log10(power / 32768.0**2 + 1e-12)
