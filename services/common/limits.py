"""Rules that more than one service checks, each written once: the pydantic settings take their
bounds from here, and the request checks raise the same INVALID_ARGUMENT text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import Field

from services.common.errors import InvalidArgument

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Range(Generic[N]):
    """An inclusive range a value must lie in."""

    low: N
    high: N

    def check(self, name: str, value: N) -> N:
        if not self.low <= value <= self.high:
            raise InvalidArgument(f"{name}={value:g} is out of range: use {self.low} to {self.high}")
        return value

    def field(self, default: N, description: str = "") -> Any:
        """A pydantic field with these bounds."""
        return Field(default, ge=self.low, le=self.high, description=description)


# Speech speed, as Kokoro takes it (1.0 is the voice's own pace).
SPEED = Range(0.5, 2.0)
# Silence that ends a turn with the `silence` detector (the seed's is 800 ms).
END_SILENCE_MS = Range(100, 10000)
# Silence that ends a turn whatever the end-of-turn model says (the VAD's default fallback): a
# client that wants its turn to end sends at least this much silence after speaking.
END_OF_TURN_FALLBACK_MS = 1600
# What a fallback may be set to (the VAD's setting, a stream's or a session's own).
END_OF_TURN_FALLBACK = Range(200, 10000)
# Voxtral's audio input: PCM16 mono at this rate, nothing else.
VOXTRAL_SAMPLE_RATE_HZ = 16000
# A sample at or above this level (dBFS, of PCM16 full scale) is audible: it bounds trimmed speech
# and marks the first audible reply sample (first_audible_ms, the conversation benchmark).
AUDIBLE_DBFS = -45.0
AUDIBLE_AMPLITUDE = 10 ** (AUDIBLE_DBFS / 20)  # of full scale (1.0 for float audio)
# A user's typed turn (characters): Voxtral's context is what really bounds it, this keeps one
# message from holding a slot while a huge prompt is tokenised.
USER_TEXT_CHARS = Range(1, 4000)
# A session id as a client may name one (the gateway makes 32 hex digits): longer is refused before
# it reaches the store or is echoed.
SESSION_ID_CHARS = 128


def check_session_id(value: str, name: str = "session_id") -> str:
    if len(value) > SESSION_ID_CHARS:
        raise InvalidArgument(f"{name} has {len(value)} characters; a session id has at most {SESSION_ID_CHARS}")
    return value
