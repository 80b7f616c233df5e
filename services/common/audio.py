"""PCM16 audio helpers: format checks, re-chunking that keeps the remainder, soxr resampling."""

from __future__ import annotations

import numpy as np
import soxr

from services.common.errors import InvalidArgument

MIN_RATE_HZ = 8000
MAX_RATE_HZ = 48000
SAMPLE_BYTES = 2
PCM16 = np.dtype("<i2")
PCM_MAX = 32768  # full scale of a PCM16 sample


def check_sample_rate(rate_hz: int, *, what: str = "sample_rate_hz") -> int:
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise InvalidArgument(
            f"{what}={rate_hz} is not supported: use an integer rate from {MIN_RATE_HZ} to {MAX_RATE_HZ} Hz"
        )
    return rate_hz


def check_mono_pcm16(encoding_name: str, channels: int) -> None:
    """encoding_name is the AudioEncoding enum name; channels 0 is read as 1."""
    if encoding_name not in ("AUDIO_ENCODING_UNSPECIFIED", "AUDIO_ENCODING_PCM16LE"):
        raise InvalidArgument(f"encoding {encoding_name} is not supported: only AUDIO_ENCODING_PCM16LE")
    if channels not in (0, 1):
        raise InvalidArgument(f"channels={channels} is not supported: only mono (1)")


def pcm16_samples(data: bytes) -> np.ndarray:
    """Whole-sample view of PCM16LE bytes; an odd byte count is the caller's error here."""
    if len(data) % SAMPLE_BYTES:
        raise InvalidArgument(f"PCM16 audio must have an even byte count, got {len(data)} bytes")
    return np.frombuffer(data, dtype=PCM16)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] (clipped) to int16."""
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype(PCM16)


class FrameChunker:
    """Cuts a byte stream into fixed-size frames, keeping whatever is left for the next push."""

    def __init__(self, frame_bytes: int) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._pending += data
        whole = len(self._pending) - len(self._pending) % self.frame_bytes
        if whole == 0:
            return []
        block = bytes(self._pending[:whole])
        del self._pending[:whole]
        return [block[i : i + self.frame_bytes] for i in range(0, whole, self.frame_bytes)]

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._pending)

    def flush(self) -> bytes:
        rest = bytes(self._pending)
        self._pending.clear()
        return rest


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """One-shot resampling of int16 samples."""
    if in_rate == out_rate or samples.size == 0:
        return samples
    return soxr.resample(samples, in_rate, out_rate, quality="HQ")


class StreamResampler:
    """Chunk-by-chunk resampling of int16 samples with no seams between chunks."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(
            in_rate, out_rate, 1, dtype="int16", quality="HQ"
        )

    def process(self, samples: np.ndarray, *, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)
