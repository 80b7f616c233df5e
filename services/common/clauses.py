"""Cutting reply text into sentences and clauses, the units speech is synthesised in.

`split_clauses` cuts a whole text; `ClauseSplitter` does the same on streamed text deltas and
can cut the first clause early, so the first audio of a reply starts sooner.
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
    punctuation mark, or after `first_words` words, so speech can start before the sentence ends."""

    def __init__(self, *, first_words: int = 6, min_clause_chars: int = 24, max_chars: int = 300) -> None:
        self.first_words = first_words
        self.min_clause_chars = min_clause_chars
        self.max_chars = max_chars
        self._buffer = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        out: list[str] = []
        while (unit := self._next_unit()) is not None:
            if unit:
                out.append(unit)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        if not rest:
            return []
        self._emitted += 1
        return _split_long(rest, self.max_chars)

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
        if len(text) > self.max_chars:
            cut = text.rfind(" ", 0, self.max_chars)
            cut = cut if cut > 0 else self.max_chars
            self._buffer = text[cut:]
            return text[:cut].strip()
        return None
