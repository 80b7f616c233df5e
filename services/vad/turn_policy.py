"""When to believe that a turn has ended, with the `smart_turn` detector: the rule that combines
the model's probability, the silence so far, and how the probability has moved between asks.

The model is asked once the voice has been silent `ask_after_ms`, then again every
`ask_every_ms` until `ask_until_ms`. The threshold moves linearly from `threshold_start` (first
ask) to `threshold_end` (last ask). A turn always ends at the fallback; it ends at the shorter
`clean_fallback_ms` when every answer leaned towards "complete" (the model unsure rather than
sure the speaker goes on) and the silence is clean (nothing voice-like in it), so a complete
sentence the model misjudges does not wait the full fallback.

The defaults are measured (README, "End of turn"; `make bench-endpoint`): one ask at 200 ms with
a high threshold. Asking again as the silence grows ends more thinking pauses than it saves
waits, because the model's probability rises with trailing silence after a cut phrase as well.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.common.errors import InvalidArgument
from services.common.limits import END_OF_TURN_FALLBACK, END_OF_TURN_FALLBACK_MS, Range

ASK_AFTER_MS = Range(60, 2000)
ASK_EVERY_MS = Range(30, 2000)
ASK_UNTIL_MS = Range(60, 10000)
PROBABILITY = Range(0.0, 1.0)
FALLBACK_MS = END_OF_TURN_FALLBACK


class Detector(enum.StrEnum):
    SILENCE = "silence"  # the seed's rule: a fixed silence ends the turn
    SMART_TURN = "smart_turn"  # Smart Turn v3.2 asked as the silence grows


class EndReason(enum.StrEnum):
    SILENCE = "silence"  # the fixed silence of the `silence` detector
    MODEL = "model"  # the model's probability passed the threshold
    FALLBACK = "fallback"  # the fallback silence
    INPUT_END = "input_end"  # the input stream ended mid-utterance


@dataclass(frozen=True)
class TurnPolicy:
    ask_after_ms: int = 200
    ask_every_ms: int = 100
    ask_until_ms: int = 200
    threshold_start: float = 0.9
    threshold_end: float = 0.9
    fallback_ms: int = END_OF_TURN_FALLBACK_MS
    clean_fallback_ms: int = 1300
    # An answer at or above this leans towards "complete" (counts for the clean fallback).
    lean_complete: float = 0.3

    def __post_init__(self) -> None:
        ASK_AFTER_MS.check("ask_after_ms", self.ask_after_ms)
        ASK_EVERY_MS.check("ask_every_ms", self.ask_every_ms)
        ASK_UNTIL_MS.check("ask_until_ms", self.ask_until_ms)
        for name in ("threshold_start", "threshold_end", "lean_complete"):
            PROBABILITY.check(name, getattr(self, name))
        FALLBACK_MS.check("fallback_ms", self.fallback_ms)
        FALLBACK_MS.check("clean_fallback_ms", self.clean_fallback_ms)
        if not self.ask_after_ms <= self.ask_until_ms < self.clean_fallback_ms <= self.fallback_ms:
            raise InvalidArgument(
                f"need ask_after_ms <= ask_until_ms < clean_fallback_ms <= fallback_ms (got {self.ask_after_ms}, "
                f"{self.ask_until_ms}, {self.clean_fallback_ms}, {self.fallback_ms})")

    def threshold(self, silence_ms: float) -> float:
        span = max(1.0, self.ask_until_ms - self.ask_after_ms)
        share = min(1.0, max(0.0, (silence_ms - self.ask_after_ms) / span))
        return self.threshold_start + (self.threshold_end - self.threshold_start) * share

    def ends(self, probability: float, silence_ms: float) -> bool:
        return probability >= self.threshold(silence_ms)

    def fallback(self, answers: list[float], clean: bool) -> int:
        """The silence that ends the turn whatever the model says, given the answers so far."""
        leaning = bool(answers) and min(answers) >= self.lean_complete
        return self.clean_fallback_ms if leaning and clean else self.fallback_ms
