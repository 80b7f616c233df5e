"""Bounded pieces of synthesis: a clause whose phonemes would take longer than a share of the
synthesis budget is cut at words into pieces that do not, so one request never holds the slot for
long, and a cancelled one frees it within one piece. The bound comes from the engine's measured
cost (fixed + per phoneme), fitted on the pieces it has synthesised.

A clause whose listener is still hearing earlier audio is also cut just in time (`first_piece`):
when the whole clause would not be ready before that audio runs out, its first words are
synthesised alone, and the rest is planned again with that piece's audio ahead."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from services.tts.engine import MAX_PHONEMES

# Fewest phonemes a piece is cut to (a word or two): below this the fixed cost dominates.
MIN_PIECE_PHONEMES = 24
# Observations the cost is fitted on, and the least spread of phoneme counts a fit needs.
COST_WINDOW = 64
MIN_SPREAD = 20
# Share of the time until the listener runs out of audio that a just-in-time piece is sized to take
# (the rest: the cost estimate's error, the resampler, transport to the listener).
IN_TIME_SHARE = 0.75


@dataclass(frozen=True)
class Piece:
    text: str
    phonemes: str
    count: int  # phonemes the model reads


class PieceCost:
    """Milliseconds to synthesise n phonemes, as a + b·n by least squares over recent pieces."""

    def __init__(self) -> None:
        self.fixed_ms = 0.0
        self.per_phoneme_ms = 0.0
        self._seen: deque[tuple[int, float]] = deque(maxlen=COST_WINDOW)

    def observe(self, count: int, ms: float) -> None:
        if count <= 0 or ms <= 0:
            return
        self._seen.append((count, ms))
        n = len(self._seen)
        mean_x = sum(x for x, _ in self._seen) / n
        mean_y = sum(y for _, y in self._seen) / n
        var = sum((x - mean_x) ** 2 for x, _ in self._seen)
        if n >= 2 and var / n >= MIN_SPREAD ** 2:
            slope = sum((x - mean_x) * (y - mean_y) for x, y in self._seen) / var
            if slope > 0:
                self.per_phoneme_ms = slope
                self.fixed_ms = max(0.0, mean_y - slope * mean_x)
                return
        if self.per_phoneme_ms <= 0:  # no fit yet: all of the cost per phoneme (errs towards short pieces)
            self.per_phoneme_ms = mean_y / mean_x

    def predict_ms(self, count: int) -> float:
        return self.fixed_ms + self.per_phoneme_ms * count

    def fitting(self, budget_ms: float) -> int:
        """Phonemes expected to be synthesised within `budget_ms` (0 when unknown or none)."""
        if self.per_phoneme_ms <= 0:
            return 0
        return max(0, int((budget_ms - self.fixed_ms) / self.per_phoneme_ms))

    def max_phonemes(self, budget_ms: float, ceiling: int) -> int:
        """The longest piece expected to finish within `budget_ms`."""
        ceiling = min(ceiling, MAX_PHONEMES)
        if self.per_phoneme_ms <= 0:
            return ceiling
        return max(MIN_PIECE_PHONEMES, min(ceiling, self.fitting(budget_ms)))


def first_piece(piece: Piece, limit: int, phonemize: Callable[[str], str],
                count: Callable[[str], int]) -> tuple[Piece, str] | None:
    """The longest run of `piece`'s first words within `limit` phonemes, cut after punctuation when
    some is in its last third, and the words left; None when the whole piece fits, or when not even
    its first word does (cutting would add a piece's fixed cost and save nothing)."""
    n = piece.count
    words = piece.text.split()
    if n <= limit or len(words) < 2:
        return None
    # Each word's share of the phonemes by its letters: one phonemizer call instead of one per word.
    letters = [max(1, sum(c.isalnum() for c in w)) for w in words]
    total, running, fits = sum(letters), 0, 0
    for i, size in enumerate(letters[:-1]):
        running += size
        if n * running / total > limit:
            break
        fits = i + 1
    if fits == 0:
        return None
    for i in range(fits, max(0, fits - fits // 3 - 1), -1):
        if words[i - 1][-1:] in ",;:.!?":
            fits = i
            break
    while fits > 0:
        head = " ".join(words[:fits])
        head_phonemes = phonemize(head)
        if (head_count := count(head_phonemes)) <= limit:
            return Piece(head, head_phonemes, head_count), " ".join(words[fits:])
        fits -= 1  # the estimate was long: one word fewer
    return None


def _halves(words: list[str]) -> tuple[list[str], list[str]]:
    """Cut near the middle, after punctuation when some is close."""
    middle = len(words) // 2
    for offset in range(max(1, len(words) // 4)):
        for i in (middle - offset, middle + offset):
            if 0 < i < len(words) and words[i - 1][-1:] in ",;:.!?":
                return words[:i], words[i:]
    return words[:middle], words[middle:]


def plan_pieces(text: str, limit: int, phonemize: Callable[[str], str],
                count: Callable[[str], int]) -> list[Piece]:
    """`text` as pieces of at most `limit` phonemes each (a single word over it is cut short)."""
    phonemes = phonemize(text)
    n = count(phonemes)
    if n <= limit:
        return [Piece(text, phonemes, n)] if n else []
    words = text.split()
    if len(words) < 2:
        kept = phonemes[:limit]
        return [Piece(text, kept, count(kept))]
    first, second = _halves(words)
    return [*plan_pieces(" ".join(first), limit, phonemize, count),
            *plan_pieces(" ".join(second), limit, phonemize, count)]
