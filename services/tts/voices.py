"""Kokoro voice packs: one (510, 1, 256) float32 style table per voice, shared by both backends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.errors import InvalidArgument, echo

LANGUAGES = {"a": "en-us", "b": "en-gb"}
GENDERS = {"f": "female", "m": "male"}


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    language: str
    gender: str

    @property
    def british(self) -> bool:
        return self.language == "en-gb"


class VoiceBank:
    def __init__(self, path: Path) -> None:
        with np.load(path) as packs:
            self._packs = {name: packs[name].astype(np.float32) for name in packs.files
                           if name[:1] in LANGUAGES and name[1:2] in GENDERS}
        if not self._packs:
            raise ValueError(f"{path} holds no English voices")

    def names(self) -> list[str]:
        return sorted(self._packs)

    def info(self, name: str) -> VoiceInfo:
        self.pack(name)
        return VoiceInfo(name, LANGUAGES[name[0]], GENDERS[name[1]])

    def pack(self, name: str) -> np.ndarray:
        try:
            return self._packs[name]
        except KeyError:
            raise InvalidArgument(
                f"unknown voice {echo(name)}: call TtsService.ListVoices for the {len(self._packs)} voices "
                f"(e.g. {', '.join(self.names()[:4])})"
            ) from None

    @staticmethod
    def style(pack: np.ndarray, phoneme_count: int) -> np.ndarray:
        """The style row for an utterance of n phonemes, shape (1, 256)."""
        return pack[max(1, min(phoneme_count, len(pack))) - 1]
