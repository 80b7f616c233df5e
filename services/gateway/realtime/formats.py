"""The Realtime API's audio formats: PCM16 at 24 kHz, and G.711 μ-law / A-law at 8 kHz."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.common.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode


class ClientError(Exception):
    """A client event that cannot be honoured: an `error` event naming `param`; the session goes on."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _same(data: bytes) -> bytes:
    return data


@dataclass(frozen=True)
class AudioFormat:
    type: str
    rate_hz: int
    decode: Callable[[bytes], bytes]  # wire bytes -> PCM16 at rate_hz
    encode: Callable[[bytes], bytes]  # PCM16 at rate_hz -> wire bytes

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "rate": self.rate_hz} if self.type == "audio/pcm" else {"type": self.type}


PCM = AudioFormat("audio/pcm", 24000, _same, _same)
FORMATS = {
    "audio/pcm": PCM,
    "audio/pcmu": AudioFormat("audio/pcmu", 8000, ulaw_decode, ulaw_encode),
    "audio/pcma": AudioFormat("audio/pcma", 8000, alaw_decode, alaw_encode),
}
BETA_FORMATS = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}


def audio_format(value: Any, param: str) -> AudioFormat:
    """A GA format object ({"type": "audio/pcm", "rate": 24000}) or a beta name ("pcm16")."""
    if isinstance(value, str) and value in BETA_FORMATS:
        return FORMATS[BETA_FORMATS[value]]
    if not isinstance(value, dict) or not isinstance(value.get("type"), str) or value["type"] not in FORMATS:
        raise ClientError(f"{param} must be one of {sorted(FORMATS)} (as {{\"type\": ...}})", param)
    chosen = FORMATS[value["type"]]
    if value.get("rate", chosen.rate_hz) != chosen.rate_hz:
        raise ClientError(f"{param}.rate must be {chosen.rate_hz} for {chosen.type}", f"{param}.rate")
    return chosen


def decode_audio(value: Any, fmt: AudioFormat, param: str) -> bytes:
    """A client's base64 audio in `fmt` as PCM16."""
    if not isinstance(value, str):
        raise ClientError(f"{param} must be base64 audio in {fmt.type}", param)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(f"{param} is not valid base64", param) from None
    return fmt.decode(data)
