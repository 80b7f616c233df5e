"""How fast the TTS delivers speech to this gateway, and how much longer that lets each clause of a
reply be than the one before."""

from __future__ import annotations

from services.gateway.engine.stages import SpeechChunk

# The share of a clause's playing time that the next clause's synthesis may take (the rest is
# transport and scheduling).
SYNTHESIS_HEADROOM = 0.8


class SynthesisPace:
    """Synthesis time per second of audio, as the TTS has delivered it to this gateway (a moving
    average over every session's clauses; they share the TTS)."""

    def __init__(self) -> None:
        self.rtf: float | None = None  # None until the first clause

    def observe(self, chunk: SpeechChunk, sample_rate_hz: int) -> None:
        audio_ms = len(chunk.pcm) / 2 / sample_rate_hz * 1000
        if audio_ms <= 0 or chunk.compute_ms <= 0:
            return
        rtf = chunk.compute_ms / audio_ms
        self.rtf = rtf if self.rtf is None else 0.7 * self.rtf + 0.3 * rtf

    def growth(self, setting: float) -> float:
        """How much longer to say a clause may be than the one before: the setting, or less when the
        TTS as measured would not finish it while the one before is being heard. Clauses never
        shrink: a short clause costs more per second of speech (each synthesis has a fixed cost),
        and measured here, shrinking them made junction stalls more frequent, not less."""
        if setting <= 0 or self.rtf is None or self.rtf <= 0:
            return setting
        return max(1.0, min(setting, SYNTHESIS_HEADROOM / self.rtf))
