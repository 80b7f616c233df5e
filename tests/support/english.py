"""Whether text is English words: each word looked up in the web2 and GCIDE word lists that the
`english-words` package (MIT) ships. Those list lemmas, so a regular inflection counts by its stem
("devices" -> "device", "stopped" -> "stop"), and a contraction by its first part ("don't" -> "don")."""

from __future__ import annotations

import functools
import re

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
# (ending, what replaces it) for regular English inflections and derivations.
SUFFIXES = (("ies", "y"), ("ied", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("d", ""), ("ing", ""),
            ("ing", "e"), ("ly", ""), ("er", ""), ("er", "e"), ("est", ""), ("ness", ""))


@functools.cache
def dictionary() -> frozenset[str]:
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2", "gcide"], alpha=True, lower=True))


def words(text: str) -> list[str]:
    return WORD.findall(text)


# The stems of "can't", "won't" and "shan't" that are no word themselves.
NEGATED = {"ca": "can", "wo": "will", "sha": "shall"}


def known(word: str) -> bool:
    w = word.lower()
    w = NEGATED.get(w[:-3], w[:-3]) if w.endswith("n't") else w.split("'")[0]
    if w in dictionary() or w in ("i", "a"):
        return True
    for ending, replacement in SUFFIXES:
        stem = w[: -len(ending)]
        if w.endswith(ending) and len(stem) >= 2:
            if stem + replacement in dictionary():
                return True
            if ending in ("ed", "ing", "er", "est") and len(stem) > 2 and stem[-1] == stem[-2] \
                    and stem[:-1] in dictionary():  # stopped, running
                return True
    return False


def dictionary_share(text: str) -> float:
    """The share of the words of `text` that are English words (0 for no words)."""
    found = words(text)
    return sum(map(known, found)) / len(found) if found else 0.0
