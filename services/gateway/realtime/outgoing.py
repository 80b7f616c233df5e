"""The engine's events as Realtime server events (GA names and shapes)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import Status
from services.common.latency import by_name
from services.common.tools import ToolCall
from services.gateway.engine import events as ev

# Items a session remembers for truncate and transcripts (a client truncates what it is playing).
KEPT_ITEMS = 256
CLIENT_ERRORS = {Status.INVALID_ARGUMENT, Status.FAILED_PRECONDITION, Status.PERMISSION_DENIED,
                 Status.UNAUTHENTICATED}


def event_id() -> str:
    return "event_" + secrets.token_hex(8)


def error(message: str, *, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None,
          about: str | None = None) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "code": code, "message": message, "param": param,
                                       "event_id": about}}


@dataclass
class Reply:
    """One response as the client sees it."""

    response_id: str
    item_id: str
    user_item: str
    transcript: list[str] = field(default_factory=list)
    message: bool = False  # its spoken message item is open (from its first audio; one that only calls tools has none)


class Outgoing:
    """Tracks items and responses across a session's events; `manual`: no speech events (the client
    commits), and a commit's item id was given out already."""

    def __init__(self, encode: Any, manual: bool, rate_hz: int) -> None:
        self.encode = encode
        self.manual = manual
        self.rate_hz = rate_hz  # of the engine's input timeline
        self.cancelled_by_client: set[str] = set()  # turns the client cancelled (response.cancel)
        self.items: dict[str, str] = {}  # assistant item id -> engine turn id (truncate names the item)
        self.user_items: dict[str, str] = {}  # engine turn id -> user item id
        self.pending_items: list[str] = []  # manual commits announced, not yet answered
        self.pending_texts: list[str] = []  # typed user items created, not yet answered
        self.typed: set[str] = set()  # engine turns that answer a typed item (no transcription)
        self.spoken_s: dict[str, float] = {}  # engine turn id -> seconds of the user's audio (transcription usage)
        self.replies: dict[str, Reply] = {}
        self.last_item: str | None = None
        # A turn that called tools answers in one response per round of calls: how many it has had,
        # the words said in the earlier ones, and where each message's audio starts on the turn's timeline.
        self.rounds: dict[str, int] = {}
        self.said_before: dict[str, str] = {}
        self.item_offsets: dict[str, float] = {}
        self.continuing: set[str] = set()  # turns waiting for tool results or going on after them

    def user_item(self, turn_id: str) -> str:
        if turn_id not in self.user_items:
            self.user_items[turn_id] = self.pending_items.pop(0) if self.manual and self.pending_items \
                else "item_" + turn_id[:24]
        return self.user_items[turn_id]

    def committed(self, item_id: str) -> list[dict[str, Any]]:
        previous, self.last_item = self.last_item, item_id
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}  # its words come by transcription
        return [{"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id},
                {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
                {"type": "conversation.item.done", "previous_item_id": previous, "item": item}]

    def typed_item(self, item_id: str, text: str) -> list[dict[str, Any]]:
        """A user text message the client created: added now, answered at response.create."""
        previous, self.last_item = self.last_item, item_id
        self.pending_texts.append(item_id)
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_text", "text": text}]}
        return [{"type": "conversation.item.added", "previous_item_id": previous, "item": item},
                {"type": "conversation.item.done", "previous_item_id": previous, "item": item}]

    def tool_output(self, item_id: str, call_id: str, output: str) -> list[dict[str, Any]]:
        """A function's result the client created: added to the conversation."""
        previous, self.last_item = self.last_item, item_id
        item = {"id": item_id, "object": "realtime.item", "type": "function_call_output", "status": "completed",
                "call_id": call_id, "output": output}
        return [{"type": "conversation.item.added", "previous_item_id": previous, "item": item},
                {"type": "conversation.item.done", "previous_item_id": previous, "item": item}]

    def _transcription(self, turn_id: str, text: str, known: bool) -> list[dict[str, Any]]:
        if turn_id in self.typed:
            return []  # the user's words are the item they typed
        item = self.user_item(turn_id)
        seconds = self.spoken_s.pop(turn_id, 0.0)
        if not known:
            return [{"type": "conversation.item.input_audio_transcription.failed", "item_id": item,
                     "content_index": 0, "error": {"type": "transcription_error", "code": "unavailable",
                                                   "message": "the words could not be transcribed"}}]
        return [{"type": "conversation.item.input_audio_transcription.completed", "item_id": item,
                 "content_index": 0, "transcript": text, "usage": {"type": "duration", "seconds": seconds}}]

    def _reply(self, turn_id: str, message: bool = True) -> tuple[Reply, list[dict[str, Any]]]:
        """The turn's response in progress, made now if there is none; `message`: with its spoken
        message item (a response that only calls tools has none)."""
        reply = self.replies.get(turn_id)
        out: list[dict[str, Any]] = []
        if reply is None:
            n = self.rounds.get(turn_id, 0)
            suffix = f"_{n}" if n else ""
            reply = Reply(f"resp_{turn_id[:24 - len(suffix)]}{suffix}",
                          f"item_r{turn_id[:23 - len(suffix)]}{suffix}", self.user_item(turn_id), message=False)
            self.replies[turn_id] = reply
            out.append({"type": "response.created", "response": self._response(reply, "in_progress", [])})
        if not message or reply.message:
            return reply, out
        reply.message = True
        self.items[reply.item_id] = turn_id
        for kept in (self.items, self.user_items, self.item_offsets):  # a long session keeps its recent items only
            while len(kept) > KEPT_ITEMS:
                del kept[next(iter(kept))]
        previous, self.last_item = self.last_item, reply.item_id
        item = {"id": reply.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        ids = {"response_id": reply.response_id, "item_id": reply.item_id, "output_index": 0, "content_index": 0}
        return reply, [
            *out,
            {"type": "response.output_item.added", "response_id": reply.response_id, "output_index": 0,
             "item": item},
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
            {"type": "response.content_part.added", **ids, "part": {"type": "audio", "transcript": ""}},
        ]

    def _called(self, turn_id: str, calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
        """The response ends with the function calls of this round (as GA's does); the reply's words
        after the results come in the turn's next response."""
        reply, out = self._reply(turn_id, message=False)
        first = 1 if reply.message else 0
        items = []
        for n, call in enumerate(calls):
            index = first + n
            item_id = f"item_fc{call.call_id}{turn_id[:12]}"
            ids = {"response_id": reply.response_id, "item_id": item_id, "output_index": index,
                   "call_id": call.call_id}
            added = {"id": item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
                     "name": call.name, "call_id": call.call_id, "arguments": ""}
            done = {**added, "status": "completed", "arguments": call.arguments_json()}
            previous, self.last_item = self.last_item, item_id
            out += [{"type": "response.output_item.added", "response_id": reply.response_id, "output_index": index,
                     "item": added},
                    {"type": "conversation.item.added", "previous_item_id": previous, "item": added},
                    {"type": "response.function_call_arguments.delta", **ids, "delta": call.arguments_json()},
                    {"type": "response.function_call_arguments.done", **ids, "name": call.name,
                     "arguments": call.arguments_json()},
                    {"type": "response.output_item.done", "response_id": reply.response_id, "output_index": index,
                     "item": done},
                    {"type": "conversation.item.done", "previous_item_id": previous, "item": done}]
            items.append(done)
        self.continuing.add(turn_id)
        return out + self._finish(turn_id, "completed", calls=items)

    def _response(self, reply: Reply, status: str, output: list[dict[str, Any]],
                  details: dict[str, Any] | None = None, timings: dict[str, float] | None = None) -> dict[str, Any]:
        return {"id": reply.response_id, "object": "realtime.response", "status": status,
                "status_details": details, "output": output, "output_modalities": ["audio"],
                "conversation_id": "conv_default", "metadata": None,
                "usage": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0},
                # The stage timings of the turn (ms), named as everywhere in this project.
                "timings": timings or {}}

    def _finish(self, turn_id: str, status: str, details: dict[str, Any] | None = None,
                timings: dict[str, float] | None = None, transcript: str | None = None,
                calls: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        reply = self.replies.pop(turn_id, None)
        if reply is None:
            return []
        self.rounds[turn_id] = self.rounds.get(turn_id, 0) + 1
        said = transcript if transcript is not None else "".join(reply.transcript)
        before = self.said_before.get(turn_id, "")
        if before and said.startswith(before):  # the turn's heard words: this response has those after the calls
            said = said[len(before):].strip()
        if calls is not None:
            self.said_before[turn_id] = " ".join(filter(None, (before, said)))
        if not reply.message:
            return [{"type": "response.done", "response": self._response(reply, status, calls or [], details,
                                                                         timings)}]
        ids = {"response_id": reply.response_id, "item_id": reply.item_id, "output_index": 0, "content_index": 0}
        item = {"id": reply.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "completed" if status == "completed" else "incomplete",
                "content": [{"type": "output_audio", "transcript": said}]}
        return [
            {"type": "response.output_audio.done", **ids},
            {"type": "response.output_audio_transcript.done", **ids, "transcript": said},
            {"type": "response.content_part.done", **ids, "part": {"type": "audio", "transcript": said}},
            {"type": "response.output_item.done", "response_id": reply.response_id, "output_index": 0,
             "item": item},
            {"type": "conversation.item.done", "item": item},
            {"type": "response.done", "response": self._response(reply, status, [item, *(calls or [])], details,
                                                                  timings)},
        ]

    @property
    def active(self) -> str | None:
        """The turn of the response in progress, if any."""
        return next(iter(self.replies), None)

    def map(self, event: ev.Event) -> list[dict[str, Any]]:
        match event:
            case ev.SpeechStarted() if not self.manual:
                return [{"type": "input_audio_buffer.speech_started", "item_id": self.user_item(event.turn_id),
                         "audio_start_ms": event.start_sample * 1000 // self.rate_hz}]
            case ev.SpeechEnded():
                item = self.user_item(event.turn_id)
                self.spoken_s[event.turn_id] = round((event.end_sample - event.start_sample) / self.rate_hz, 3)
                heard = [] if self.manual else [  # a manual commit was announced when the client made it
                    {"type": "input_audio_buffer.speech_stopped", "item_id": item,
                     "audio_end_ms": event.end_sample * 1000 // self.rate_hz}, *self.committed(item)]
                return [*heard, *self._reply(event.turn_id, message=False)[1]]
            case ev.ReplyResumed() if event.dismissed_turn_id:  # that sound was no turn: its response ends unsaid
                return self._finish(event.dismissed_turn_id, "cancelled", {"type": "cancelled",
                                                                          "reason": "turn_detected"})
            case ev.ToolCalled():
                return self._called(event.turn_id, event.calls)
            case ev.ResponseAudio():
                reply, out = self._reply(event.turn_id)
                self.item_offsets.setdefault(reply.item_id, event.offset_ms)
                ids = {"response_id": reply.response_id, "item_id": reply.item_id, "output_index": 0,
                       "content_index": 0}
                if words := " ".join(event.text.split()):  # clauses joined by one space: as heard_text has them
                    delta = f" {words}" if reply.transcript else words
                    reply.transcript.append(delta)
                    out.append({"type": "response.output_audio_transcript.delta", **ids, "delta": delta})
                out.append({"type": "response.output_audio.delta", **ids,
                            "delta": base64.b64encode(self.encode(event.pcm)).decode()})
                return out
            case ev.TextTurn():
                self.typed.add(event.turn_id)
                if self.pending_texts:
                    self.user_items[event.turn_id] = self.pending_texts.pop(0)
                return self._reply(event.turn_id, message=False)[1]
            case ev.TurnCompleted():
                return self._finish(event.turn_id, "completed", timings=by_name(event.metrics),
                                    transcript=event.heard_text)
            case ev.TurnEnded():  # every turn's, whatever its outcome: the user's words are known now
                out = self._transcription(event.turn_id, event.user_text, event.user_text_known)
                self.typed.discard(event.turn_id)
                self.continuing.discard(event.turn_id)
                for kept in (self.rounds, self.said_before):
                    kept.pop(event.turn_id, None)
                return out
            case ev.Interrupted():
                reason = "client_cancelled" if event.turn_id in self.cancelled_by_client else "turn_detected"
                return self._finish(event.turn_id, "cancelled", {"type": "cancelled", "reason": reason},
                                    transcript=event.heard_text)
            case ev.ErrorEvent():
                # A failed response says so in its response.done, as GA does: no `error` event beside it
                # (clients such as Pipecat's take any `error` as the end of the connection).
                opened = self._reply(event.turn_id, message=False)[1] \
                    if event.turn_id in self.continuing and event.turn_id not in self.replies else []
                failed = opened + self._finish(event.turn_id, "failed", {"type": "failed", "error": {
                    "type": "server_error", "code": event.code.value.lower(), "message": event.message}}) \
                    if event.turn_id else []
                return failed or [error(event.message, kind="invalid_request_error" if event.code in CLIENT_ERRORS
                                        else "server_error", code=event.code.value.lower())]
        return []  # text deltas run ahead of the audio (the transcript follows the audio); pauses have no GA event
