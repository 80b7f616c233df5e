"""What each Realtime client event does to its connection: checked field by field (an error names
the field), then queued for the engine session or answered at once."""

from __future__ import annotations

from typing import Any

from services.gateway.engine.conversations import ConversationEngine
from services.gateway.engine.inputs import (
    Audio,
    ClearAudio,
    ControlInput,
    Input,
    PlaybackReport,
    ToolResult,
    Update,
)
from services.gateway.engine.vocabulary import Control
from services.gateway.realtime.config import RealtimeConfig, apply, resolve_voice
from services.gateway.realtime.formats import ClientError, decode_audio
from services.gateway.realtime.items import Pending, function_output, new_item_id, user_message
from services.gateway.realtime.outgoing import Outgoing
from services.gateway.realtime.response_fields import BETA_RESPONSE_FIELDS, RESPONSE_FIELDS, Checks

# The most audio_end_ms a truncate may name (a day): longer than any reply.
MAX_AUDIO_END_MS = 86_400_000


class ClientEvents:
    """The handlers of RealtimeSession (services/gateway/realtime/session.py), which holds the state."""

    engine: ConversationEngine
    config: RealtimeConfig
    started: RealtimeConfig
    session_id: str
    restart_pending: bool
    pending: Pending
    out: Outgoing
    item_ids: set[str]  # the ids clients gave their items (kept, as GA does)
    beta: bool  # the client speaks the beta dialect

    async def send(self, body: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _queue(self, item: Input) -> None:
        raise NotImplementedError

    def _restart(self) -> None:
        raise NotImplementedError

    async def _dispatch(self, body: dict[str, Any]) -> None:
        kind = body["type"]
        if kind == "session.update":
            await self._session_update(body.get("session"))
        elif kind == "input_audio_buffer.append":
            await self._queue(Audio(decode_audio(body.get("audio"), self.config.input_format, "audio")))
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        elif kind == "input_audio_buffer.clear":
            if self.config.turn_detection is None:
                await self._queue(ClearAudio())
                self.pending.commit = False
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            await self._item_create(body.get("item"))
        elif kind == "response.create":
            await self._response_create(body.get("response"))
        elif kind == "response.cancel":
            active = self.out.active
            if active is None:
                raise ClientError("there is no response in progress to cancel", code="response_cancel_not_active")
            self.out.cancelled_by_client.add(active)
            await self._queue(ControlInput(Control.INTERRUPT))
        elif kind == "conversation.item.truncate":
            await self._truncate(body)
        else:
            raise ClientError(f"event type {kind[:64]!r} is not supported here", "type", code="invalid_event")

    async def _session_update(self, session: Any) -> None:
        new = apply(self.config, session)
        voices = await self.engine.voices()
        if new.voice:
            new = type(new)(**{**new.__dict__, "voice": resolve_voice(new.voice, voices)})
            if voices and new.voice not in voices:
                raise ClientError(f"voice {new.voice[:64]!r} is unknown: the TTS offers {', '.join(sorted(voices))}",
                                  "session.audio.output.voice")
        if len(new.instructions) > self.engine.settings.max_instructions_chars:
            raise ClientError(f"session.instructions have {len(new.instructions)} characters; the limit is "
                              f"{self.engine.settings.max_instructions_chars}", "session.instructions")
        old, self.config = self.config, new
        if new.engine_shape() != self.started.engine_shape() or self.restart_pending:
            if self.session_id:
                self._restart()
            else:  # the engine session is still starting: it starts again once it has (session.created first)
                self.restart_pending = True
            return  # session.updated comes when it has started
        if (new.voice, new.speed, new.instructions, new.offered) != (old.voice, old.speed, old.instructions,
                                                                       old.offered):
            await self._queue(Update(new.voice, new.speed, new.instructions, new.offered))
        await self.send({"type": "session.updated", "session": new.describe(self.session_id)})

    async def _commit(self, item_id: str = "") -> None:
        if self.config.turn_detection is not None:
            raise ClientError("with turn detection on, the server commits the audio at the end of each turn "
                              "(set session.audio.input.turn_detection to null to commit yourself)",
                              code="input_audio_buffer_commit_not_allowed")
        self.pending.add_commit()
        item = item_id or new_item_id()
        self.out.pending_items.append(item)
        for body in self.out.committed(item):
            await self.send(body)

    async def _item_create(self, item: Any) -> None:
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            await self._tool_output(item)
            return
        message = user_message(item)
        if message.item_id:
            self._claim(message.item_id)
        if message.text:
            item_id = message.item_id or new_item_id()
            self.pending.add_text(item_id, message.text)
            for body in self.out.typed_item(item_id, message.text):
                await self.send(body)
            return
        if self.config.turn_detection is not None:
            raise ClientError("audio items are for manual turns: with turn detection on, append audio instead",
                              "item")
        fmt = self.config.input_format
        audio = [decode_audio(part, fmt, f"item.content[{n}].audio") for n, part in enumerate(message.audio)]
        for pcm in audio:
            await self._queue(Audio(pcm))
        await self._commit(message.item_id)

    def _claim(self, item_id: str) -> None:
        """A client's own item id, kept (as GA does): once per conversation."""
        if item_id in self.item_ids:
            raise ClientError(f"item.id {item_id!r} is taken in this conversation", "item.id",
                              code="item_already_exists")
        self.item_ids.add(item_id)

    async def _tool_output(self, item: dict[str, Any]) -> None:
        """A function's result: the reply that called it goes on with it (response.create then asks for
        nothing more: the reply's words come in the turn's next response)."""
        result = function_output(item)
        self._claim(result.item_id)
        await self._queue(ToolResult(result.call_id, result.output))
        for body in self.out.tool_output(result.item_id, result.call_id, result.output):
            await self.send(body)

    async def _response_create(self, response: Any) -> None:
        check_response(response, BETA_RESPONSE_FIELDS if self.beta else RESPONSE_FIELDS)
        if self.out.continuing and self.out.active is None:
            return  # a reply goes on with its tools' results: that is the response asked for
        if self.out.active is not None:
            raise ClientError("a response is in progress: cancel it first",
                              code="conversation_already_has_active_response")
        answer, typed_item = self.pending.respond()
        if typed_item is not None:
            self.out.pending_texts.append(typed_item)
        await self._queue(answer)

    async def _truncate(self, body: dict[str, Any]) -> None:
        item_id, played = body.get("item_id"), body.get("audio_end_ms")
        turn_id = self.out.items.get(item_id) if isinstance(item_id, str) else None
        if turn_id is None:
            raise ClientError("item_id names no assistant item of this session", "item_id")
        if isinstance(played, bool) or not isinstance(played, int) or not 0 <= played <= MAX_AUDIO_END_MS:
            raise ClientError(f"audio_end_ms must be a whole number of milliseconds from 0 to {MAX_AUDIO_END_MS}",
                              "audio_end_ms")
        index = body.get("content_index", 0)
        if isinstance(index, bool) or index != 0:
            raise ClientError("content_index must be 0: an assistant item here has one (audio) content part",
                              "content_index")
        start_ms = self.out.item_offsets.get(str(item_id), 0.0)  # where this item's audio starts in its turn
        await self._queue(PlaybackReport(turn_id, start_ms + played))  # what was heard: context keeps only that
        await self.send({"type": "conversation.item.truncated", "item_id": item_id,
                         "content_index": 0, "audio_end_ms": played})


def check_response(response: Any, fields: Checks = RESPONSE_FIELDS) -> None:
    """ClientError naming the field, unless `response` is None or an object of `fields` each of its type."""
    if response is None:
        return
    if not isinstance(response, dict):
        raise ClientError("response must be an object", "response")
    for key, value in response.items():
        check = fields.get(key)
        if check is None:
            raise ClientError(f"response.{key[:64]} is not a field of response.create", f"response.{key[:64]}")
        if not check(value):
            raise ClientError(f"response.{key} has a value of the wrong type", f"response.{key}")
