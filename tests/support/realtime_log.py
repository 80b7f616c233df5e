"""Reading a Realtime client's log of server events (each a dict with `type`, a time `t` in seconds,
and for response events the response id and status): what every client test asserts of it."""

from __future__ import annotations

from typing import Any

Events = list[dict[str, Any]]


def check_responses(events: Events) -> list[str]:
    """Asserts one response at a time (created, then done, before the next is created) and audio only
    for the response in progress; returns the responses' final statuses in order."""
    open_id: str | None = None
    statuses: list[str] = []
    for n, event in enumerate(events):
        kind, rid = event["type"], event.get("response")
        if kind == "response.created":
            assert open_id is None, f"event {n}: response {rid} created while {open_id} is in progress"
            open_id = rid
        elif kind == "response.done":
            assert rid == open_id, f"event {n}: response.done for {rid}, but {open_id} is in progress"
            open_id = None
            statuses.append(event["status"])
        elif kind in ("response.output_audio.delta", "response.audio.delta"):
            assert rid == open_id, f"event {n}: audio for {rid} while {open_id} is in progress"
    return statuses


def barge_ins(events: Events) -> list[float]:
    """For each cancelled response: asserts it ended at the user's speech (its response.done comes
    after an input_audio_buffer.speech_started, with no audio of it in between, and before that
    speech's speech_stopped); returns the ms from speech_started to response.done, for the record."""
    delays: list[float] = []
    started: dict[str, Any] | None = None
    for n, event in enumerate(events):
        kind = event["type"]
        if kind == "input_audio_buffer.speech_started":
            started = event
        elif kind == "input_audio_buffer.speech_stopped":
            started = None
        elif started is not None and kind in ("response.output_audio.delta", "response.audio.delta"):
            raise AssertionError(f"event {n}: audio of response {event.get('response')} after speech_started")
        elif kind == "response.done" and event.get("status") == "cancelled":
            assert started is not None, f"event {n}: response {event.get('response')} cancelled with no speech "\
                "in progress (before speech_started, or after its speech_stopped)"
            delays.append(round((event["t"] - started["t"]) * 1000, 1))
    return delays
