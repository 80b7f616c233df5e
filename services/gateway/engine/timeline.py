"""A session's input audio on its own sample timeline: a bounded buffer to cut utterances from,
and when each sample arrived (for endpoint_ms)."""

from __future__ import annotations

import bisect
from collections import deque

import numpy as np

from services.common.audio import PCM16, PCM_MAX


class InputTimeline:
    def __init__(self, sample_rate_hz: int, keep_s: float) -> None:
        self.rate = sample_rate_hz
        self.capacity = int(sample_rate_hz * keep_s)
        self._buffer = np.zeros(self.capacity, dtype=PCM16)
        self.total = 0  # samples received since the session began
        self._arrivals: deque[tuple[int, float]] = deque()  # (end offset of a chunk, arrival time)
        self._pending = b""  # an odd byte waiting for its pair

    def append(self, data: bytes, arrived_at: float) -> bytes:
        """Keep the whole samples of `data`; returns them (the odd byte waits for the next chunk)."""
        data = self._pending + data
        whole = len(data) - len(data) % 2
        self._pending = data[whole:]
        samples = np.frombuffer(data[:whole], dtype=PCM16)
        n = len(samples)
        if n == 0:
            return b""
        if n >= self.capacity:  # only the last `capacity` samples stay, each at its ring position
            first_kept = self.total + n - self.capacity
            self._buffer[np.arange(first_kept, self.total + n) % self.capacity] = samples[-self.capacity:]
        else:
            start = self.total % self.capacity
            first = min(n, self.capacity - start)
            self._buffer[start:start + first] = samples[:first]
            self._buffer[: n - first] = samples[first:]
        self.total += n
        self._arrivals.append((self.total, arrived_at))
        while self._arrivals and self._arrivals[0][0] < self.total - self.capacity:
            self._arrivals.popleft()
        return data[:whole]

    def cut(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) as far as they are still held."""
        start = max(start, self.total - self.capacity, 0)
        end = min(end, self.total)
        if end <= start:
            return np.zeros(0, dtype=PCM16)
        idx = np.arange(start, end) % self.capacity
        return self._buffer[idx].copy()

    def level_dbfs(self, ms: float) -> float:
        """RMS level of the last `ms` of input, in dB below full scale (-inf: digital silence or none)."""
        tail = self.cut(self.total - int(self.rate * ms / 1000), self.total).astype(np.float64)
        rms = float(np.sqrt(np.mean(tail**2))) if tail.size else 0.0
        return 20 * float(np.log10(rms / PCM_MAX)) if rms > 0 else float("-inf")

    def arrival_of(self, sample: int) -> float | None:
        """When the chunk holding `sample` arrived."""
        ends = [end for end, _ in self._arrivals]
        i = bisect.bisect_right(ends, sample)
        return self._arrivals[i][1] if i < len(self._arrivals) else None
