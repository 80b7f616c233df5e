"""How fast the TTS delivers speech to this gateway, and how much longer that lets each clause of a
reply be than the one before."""

from __future__ import annotations

from collections import deque

from services.common.clauses import speech_seconds
from services.gateway.engine.stages import SpeechChunk

# The share of a clause's playing time that the next clause's synthesis may take (the rest is
# transport and scheduling).
SYNTHESIS_HEADROOM = 0.8
# Clauses the cost is fitted on, and the least spread of their lengths (estimated seconds of
# speech) a fit needs.
WINDOW = 64
MIN_SPREAD_S = 0.25


def _line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares intercept and slope of y on x; None without enough spread or a rising slope."""
    n = len(points)
    if n < 2:
        return None
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var / n < MIN_SPREAD_S ** 2:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
    return (mean_y - slope * mean_x, slope) if slope > 0 else None


class SynthesisPace:
    """What a clause costs and how long it plays, as the TTS has delivered them to this gateway
    (over every session's clauses; they share the TTS): a moving real-time factor, and, once clauses
    of different lengths have been seen, a fit of cost and playing time on the clause's estimated
    length (a fixed part per call and a part per second: on a CPU Kokoro's fixed part is large)."""

    def __init__(self) -> None:
        self.rtf: float | None = None  # None until the first clause
        self._seen: deque[tuple[float, float, float]] = deque(maxlen=WINDOW)  # (estimated s, audio s, compute ms)

    def observe(self, chunk: SpeechChunk, sample_rate_hz: int) -> None:
        audio_ms = len(chunk.pcm) / 2 / sample_rate_hz * 1000
        if audio_ms <= 0 or chunk.compute_ms <= 0:
            return
        rtf = chunk.compute_ms / audio_ms
        self.rtf = rtf if self.rtf is None else 0.7 * self.rtf + 0.3 * rtf
        if (said := speech_seconds(chunk.text)) > 0:
            self._seen.append((said, audio_ms / 1000, chunk.compute_ms))

    def fit(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """((fixed ms, ms per estimated second), (fixed s, s per estimated second)) of cost and
        playing time, or None until clauses of different lengths have been measured."""
        cost = _line([(said, ms) for said, _, ms in self._seen])
        plays = _line([(said, audio) for said, audio, _ in self._seen])
        return (cost, plays) if cost is not None and plays is not None else None

    def growth(self, setting: float, clause_s: float = 1.0) -> float:
        """How much longer to say a clause may be than the one before (of `clause_s` estimated
        seconds, the shortest a reply starts with): the setting, or less when the TTS as measured
        would not finish it while the one before is heard. With a fixed cost per call a longer
        clause is cheaper per second, so the factor found for the shortest clause holds for every
        longer one. Clauses never shrink: a short clause costs more per second of speech, and
        measured here, shrinking them made junction stalls more frequent, not less."""
        if setting <= 0:
            return setting
        fitted = self.fit()
        if fitted is not None and clause_s > 0:
            (fixed_ms, per_s_ms), (plays_fixed_s, plays_per_s) = fitted
            heard_ms = (plays_fixed_s + plays_per_s * clause_s) * 1000
            longest = (SYNTHESIS_HEADROOM * heard_ms - fixed_ms) / per_s_ms
            return max(1.0, min(setting, longest / clause_s))
        if self.rtf is None or self.rtf <= 0:
            return setting
        return max(1.0, min(setting, SYNTHESIS_HEADROOM / self.rtf))
