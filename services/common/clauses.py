"""Cutting reply text into sentences and clauses, the units speech is synthesised in.

`split_clauses` cuts a whole text; `ClauseSplitter` does the same on streamed text deltas and
can cut the first clause early, so the first audio of a reply starts sooner, and bounds each
clause by how long it will take to say, so its synthesis ends before the clause before it has
been heard.
"""

from __future__ import annotations

import re

SENTENCE_END = ".!?…"
CLAUSE_END = ",;:—–"
CLOSERS = "\"')]”’»"
# Abbreviations whose period ends no sentence.
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "approx",
                           "no", "fig", "inc", "ltd", "co", "mt", "a.m", "p.m", "u.s"})
_WORD_BEFORE = re.compile(r"([\w.]+)$")
# Speech length from text without a phonemizer: Kokoro at speed 1.0 says about this many letters
# a second (measured on the training corpus: bench/results/speech_rate.json); a digit is read as
# a word of about three letters' length, other characters as nothing.
LETTERS_PER_S = 11.7
DIGIT_LETTERS = 3.0


def speech_seconds(text: str, speed: float = 1.0) -> float:
    """About how long `text` takes to say."""
    letters = sum(1 for c in text if c.isalpha()) + DIGIT_LETTERS * sum(1 for c in text if c.isdigit())
    return letters / LETTERS_PER_S / speed


def _is_boundary(text: str, i: int, *, clauses: bool) -> bool:
    """Whether text[i] ends a unit: punctuation, then whitespace (not a decimal or an abbreviation)."""
    ch = text[i]
    if ch not in SENTENCE_END and not (clauses and ch in CLAUSE_END):
        return False
    j = i + 1
    while j < len(text) and text[j] in CLOSERS:
        j += 1
    if j >= len(text) or not text[j].isspace():
        return False
    if ch == ".":
        word = _WORD_BEFORE.search(text[:i])
        if word and (word.group(1).lower() in ABBREVIATIONS or len(word.group(1)) == 1 and word.group(1).isupper()):
            return False
    return True


def _cut(text: str, i: int) -> int:
    """Index just past the punctuation at i and any closing quotes or brackets."""
    j = i + 1
    while j < len(text) and text[j] in CLOSERS:
        j += 1
    return j


def split_clauses(text: str, *, min_clause_chars: int = 24, max_chars: int = 300) -> list[str]:
    """Sentences, and clauses of at least `min_clause_chars`; none longer than `max_chars`."""
    units: list[str] = []
    start = 0
    for i in range(len(text)):
        if i < start:
            continue
        if _is_boundary(text, i, clauses=False) or (
            _is_boundary(text, i, clauses=True) and i + 1 - start >= min_clause_chars
        ):
            end = _cut(text, i)
            units.append(text[start:end])
            start = end
    units.append(text[start:])
    out: list[str] = []
    for unit in (u.strip() for u in units):
        out += _split_long(unit, max_chars) if unit else []
    return out


def _split_long(unit: str, max_chars: int) -> list[str]:
    """Cut an over-long unit at word boundaries."""
    pieces: list[str] = []
    while len(unit) > max_chars:
        cut = unit.rfind(" ", 0, max_chars)
        cut = cut if cut > 0 else max_chars
        pieces.append(unit[:cut].strip())
        unit = unit[cut:].strip()
    return pieces + ([unit] if unit else [])


class ClauseSplitter:
    """Incremental splitting of streamed text. The first clause may be cut early: at the first
    punctuation mark, after `first_words` words, or once it would take `first_clause_s` to say,
    so speech can start before the sentence ends. Each later clause is cut at the latest once it
    would take `growth` times as long to say as the one before: its synthesis then ends while
    that one is still being heard (synthesis is faster than real time by more than `growth`)."""

    def __init__(self, *, first_words: int = 6, first_clause_s: float = 0.0, growth: float = 0.0,
                 min_clause_chars: int = 24, max_chars: int = 300) -> None:
        self.first_words = first_words
        self.first_clause_s = first_clause_s
        self.growth = growth
        self.min_clause_chars = min_clause_chars
        self.max_chars = max_chars
        self._buffer = ""
        self._emitted = 0
        self._budget_s = first_clause_s  # how long the next clause may take to say; 0: no bound

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        out: list[str] = []
        while (unit := self._next_unit()) is not None:
            if unit:
                out.append(self._emit(unit))
        return out

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        out: list[str] = []
        while rest:
            cut = self._budget_cut(rest + " ")
            unit, rest = (rest[:cut].strip(), rest[cut:].strip()) if cut else (rest, "")
            out += [self._emit(piece) for piece in _split_long(unit, self.max_chars)]
        return out

    def _emit(self, unit: str) -> str:
        self._emitted += 1
        if self.growth > 0:
            self._budget_s = max(self.first_clause_s, self.growth * speech_seconds(unit))
        return unit

    def _budget_cut(self, text: str) -> int:
        """Where to cut `text` so the clause stays within its budget: after the last whole word that
        fits (at least one word); 0 while every whole word so far fits, or when there is no budget."""
        if self._budget_s <= 0:
            return 0
        # One pass: the estimate is a sum over characters, so each word adds its own share.
        seconds, start, last_fit, first_end = 0.0, 0, 0, 0
        for match in re.finditer(r"\S+\s", text):
            seconds += speech_seconds(text[start:match.end()])
            start = match.end()
            first_end = first_end or start
            if seconds > self._budget_s:
                return last_fit or first_end
            last_fit = start
        return 0

    def _next_unit(self) -> str | None:
        text = self._buffer
        first = self._emitted == 0
        min_chars = 1 if first else self.min_clause_chars
        for i in range(len(text)):
            if _is_boundary(text, i, clauses=False) or (
                _is_boundary(text, i, clauses=True) and len(text[: i + 1].strip()) >= min_chars
            ):
                end = _cut(text, i)
                self._buffer = text[end:]
                return text[:end].strip()
        if first and self.first_words > 0:
            words = list(re.finditer(r"\S+\s", text))
            if len(words) >= self.first_words:
                end = words[self.first_words - 1].end()
                self._buffer = text[end:]
                return text[:end].strip()
        if cut := self._budget_cut(text):
            self._buffer = text[cut:]
            return text[:cut].strip()
        if len(text) > self.max_chars:
            cut = text.rfind(" ", 0, self.max_chars)
            cut = cut if cut > 0 else self.max_chars
            self._buffer = text[cut:]
            return text[:cut].strip()
        return None
