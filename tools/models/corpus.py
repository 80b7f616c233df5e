"""English sentences a voice assistant could say, for training the small English Voxtral.

Source: the replies in chatterbot-corpus's English dialogues (PyPI `chatterbot-corpus`, BSD-3-Clause),
split into sentences and kept when they read as one spoken sentence: 8 to 22 words, capitalised,
ending in . ! or ?, only letters, apostrophes and light punctuation (nothing a TTS would spell out).
"""

from __future__ import annotations

import re
from pathlib import Path

SOURCE = "chatterbot-corpus 1.3.3 (PyPI), English dialogues, BSD-3-Clause"
MIN_WORDS, MAX_WORDS = 8, 22
SPOKEN = re.compile(r"[A-Z][A-Za-z ,.'?!]*[.?!]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def corpus_folder() -> Path:
    import chatterbot_corpus

    return Path(chatterbot_corpus.__file__).parent / "data" / "english"


def replies(folder: Path) -> list[str]:
    """Every line after the first of each dialogue: what the other side answered."""
    import yaml

    lines: list[str] = []
    for path in sorted(folder.glob("*.yml")):
        for dialogue in yaml.safe_load(path.read_text()).get("conversations", []):
            lines += [line for line in dialogue[1:] if isinstance(line, str)]
    return lines


def openers(folder: Path) -> list[str]:
    """The first line of each dialogue: what a user said to start it."""
    import yaml

    lines: list[str] = []
    for path in sorted(folder.glob("*.yml")):
        for dialogue in yaml.safe_load(path.read_text()).get("conversations", []):
            lines += [dialogue[0]] if dialogue and isinstance(dialogue[0], str) else []
    return lines


def spoken_sentences(lines: list[str]) -> list[str]:
    """Sentences to be said, deduplicated, in a stable order."""
    kept = set()
    for line in lines:
        for sentence in SENTENCE_END.split(" ".join(line.split())):
            words = sentence.split()
            if MIN_WORDS <= len(words) <= MAX_WORDS and SPOKEN.fullmatch(sentence) and " ," not in sentence:
                kept.add(sentence)
    return sorted(kept)


def sentences() -> list[str]:
    return spoken_sentences(replies(corpus_folder()))


def user_lines(avoid: re.Pattern[str]) -> list[str]:
    """What users typed to open a dialogue, deduplicated, none matching `avoid`."""
    return sorted({" ".join(line.split()) for line in openers(corpus_folder())
                   if line.strip() and not avoid.search(line)})
