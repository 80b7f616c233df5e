"""Text made speakable before it becomes phonemes: long digit strings read as digits in groups, and
characters the voice's language cannot speak dropped instead of spelled out by their names (the
phonemizer's fallback reads "ب" as "Arabic letter beh" and a 300-digit string as one huge number:
a minute of slot time for nonsense)."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter as Tally
from dataclasses import dataclass

from prometheus_client import Counter

log = logging.getLogger(__name__)
DROPPED_CHARACTERS = Counter("voice_tts_dropped_characters_total",
                             "Characters the voice cannot speak, dropped before phonemes", ["script"])

# A digit run this long is a code or a phone number, not an amount: read digit by digit.
DIGITS_AS_NUMBER = 6
DIGIT_GROUP = 3
_DIGIT_RUN = re.compile(r"(?<![\d.,])\d+(?![\d]|[.,]\d)")
# The scripts the phonemizer speaks, per voice language (both English G2Ps read Latin letters).
SPOKEN_SCRIPTS = {"en-us": frozenset({"LATIN"}), "en-gb": frozenset({"LATIN"})}
# Symbols that the English phonemizer reads as words.
SPOKEN_SYMBOLS = frozenset("$€£¥%&+=@#°")


@dataclass(frozen=True)
class Normalized:
    text: str
    dropped: dict[str, int]  # script (or "SYMBOL") -> characters dropped


def digit_groups(digits: str) -> str:
    """'5551234567' -> '5 5 5, 1 2 3, 4 5 6 7': groups of three, never a lone digit at the end."""
    groups = [digits[i:i + DIGIT_GROUP] for i in range(0, len(digits), DIGIT_GROUP)]
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2:] = [groups[-2] + groups[-1]]
    return ", ".join(" ".join(group) for group in groups)


def read_digits(text: str) -> str:
    """Digit runs longer than an amount, or codes with a leading zero, spelled as digit groups."""
    def spell(match: re.Match[str]) -> str:
        run = match.group(0)
        if len(run) > DIGITS_AS_NUMBER or (len(run) > 2 and run[0] == "0"):
            return digit_groups(run)
        return run

    return _DIGIT_RUN.sub(spell, text)


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else "UNNAMED"


def _speakable(char: str, scripts: frozenset[str]) -> tuple[bool, str]:
    category = unicodedata.category(char)
    if category[0] == "L":
        script = _script(char)
        return script in scripts, script
    if category == "Nd":
        return "0" <= char <= "9", _script(char)
    if category[0] in "PZ" or char in "\n\t":
        return True, ""
    if category[0] == "M":  # a combining mark left after NFC: spoken only on a spoken letter
        return False, "MARK"
    return char in SPOKEN_SYMBOLS, "SYMBOL"


def speakable(text: str, language: str) -> Normalized:
    """The text with what the language cannot speak replaced by spaces (word boundaries stay)."""
    scripts = SPOKEN_SCRIPTS.get(language, SPOKEN_SCRIPTS["en-us"])
    dropped: Tally[str] = Tally()
    kept: list[str] = []
    for char in unicodedata.normalize("NFC", text):
        ok, script = _speakable(char, scripts)
        if ok:
            kept.append(char)
        else:
            dropped[script] += 1
            kept.append(" ")
    if dropped:
        for script, count in dropped.items():
            DROPPED_CHARACTERS.labels(script).inc(count)
        log.info("characters the voice cannot speak were dropped", extra={"dropped": dict(dropped)})
    return Normalized(" ".join(read_digits("".join(kept)).split()), dict(dropped))
