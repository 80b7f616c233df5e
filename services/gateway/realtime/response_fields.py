"""response.create's `response` object, field by field, as GA types it and as the beta does: each
value checked, none applied (the session's settings answer; docs/api.md lists them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.gateway.realtime.formats import BETA_FORMATS

Checks = dict[str, Callable[[Any], bool]]


def _modalities(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and set(v) <= {"audio", "text"}


def _max_tokens(v: Any) -> bool:
    return v == "inf" or (isinstance(v, int) and not isinstance(v, bool) and v > 0)


# What both have under the same name.
_COMMON: Checks = {
    "instructions": lambda v: isinstance(v, str),
    "tools": lambda v: isinstance(v, list),
    "tool_choice": lambda v: isinstance(v, str | dict),
    "conversation": lambda v: isinstance(v, str),
    "input": lambda v: isinstance(v, list),
    "metadata": lambda v: v is None or isinstance(v, dict),
}
RESPONSE_FIELDS: Checks = {
    **_COMMON, "output_modalities": _modalities, "max_output_tokens": _max_tokens,
    "audio": lambda v: isinstance(v, dict), "prompt": lambda v: v is None or isinstance(v, dict),
}
BETA_RESPONSE_FIELDS: Checks = {
    **_COMMON, "modalities": _modalities, "max_response_output_tokens": _max_tokens,
    "voice": lambda v: isinstance(v, str), "output_audio_format": lambda v: v in BETA_FORMATS,
    "temperature": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}
