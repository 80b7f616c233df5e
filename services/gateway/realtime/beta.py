"""The beta dialect of the Realtime API, for clients that still speak it (the header `OpenAI-Beta:
realtime=v1`, or the subprotocol `openai-beta.realtime-v1`): the GA events this adapter makes,
renamed and reshaped as beta clients read them. Client events need no change: `session.update`'s
flat beta fields are read already (config.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.gateway.realtime.formats import BETA_FORMATS

BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
RENAMED = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
NOT_IN_BETA = {"conversation.item.done"}
FORMAT_NAMES = {ga: beta for beta, ga in BETA_FORMATS.items()}


def wants_beta(headers: Mapping[str, str], offered: list[str]) -> bool:
    return "realtime=v1" in headers.get("OpenAI-Beta", "").replace(" ", "") or BETA_SUBPROTOCOL in offered


def to_beta(body: dict[str, Any]) -> dict[str, Any] | None:
    """A GA server event as the beta names and shapes it; None when the beta has no such event."""
    kind = body.get("type", "")
    if kind in NOT_IN_BETA:
        return None
    body = {**body, "type": RENAMED.get(kind, kind)}
    if "session" in body and kind.startswith("session."):
        body["session"] = _session(body["session"])
    if isinstance(body.get("response"), dict):
        body["response"] = _response(body["response"])
    if isinstance(body.get("item"), dict):
        body["item"] = _item(body["item"])
    if isinstance(body.get("part"), dict):
        body["part"] = _part(body["part"])
    return body


def _part(part: dict[str, Any]) -> dict[str, Any]:
    return {**part, "type": "audio"} if part.get("type") == "output_audio" else part


def _item(item: dict[str, Any]) -> dict[str, Any]:
    content = item.get("content")
    return {**item, "content": [_part(p) for p in content]} if isinstance(content, list) else item


def _response(response: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in response.items() if k not in ("output_modalities", "audio")}
    out["modalities"] = ["audio", "text"]
    out["output"] = [_item(i) for i in response.get("output", [])]
    return out


def _session(session: dict[str, Any]) -> dict[str, Any]:
    audio = session.get("audio", {})
    inp, out = audio.get("input", {}), audio.get("output", {})
    flat = {k: v for k, v in session.items() if k not in ("audio", "output_modalities", "type")}
    flat.update({
        "modalities": ["audio", "text"],
        "voice": out.get("voice", "default"), "speed": out.get("speed", 1.0),
        "input_audio_format": FORMAT_NAMES.get(inp.get("format", {}).get("type", ""), "pcm16"),
        "output_audio_format": FORMAT_NAMES.get(out.get("format", {}).get("type", ""), "pcm16"),
        "input_audio_transcription": inp.get("transcription"), "turn_detection": inp.get("turn_detection"),
        "input_audio_noise_reduction": inp.get("noise_reduction"), "max_response_output_tokens": "inf",
    })
    return flat
