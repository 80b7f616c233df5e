"""One Realtime connection: client events become engine inputs, engine events become server events.
A new audio format or turn detection restarts the engine session, resumed; the rest change in place."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from services.common.errors import ServiceError
from services.common.interceptor import NOTICE_WRITE_S
from services.gateway.engine.caller import Caller
from services.gateway.engine.conversations import ConversationEngine
from services.gateway.engine.ends import Stalled
from services.gateway.engine.events import Event, SessionStarted
from services.gateway.engine.inputs import (
    Audio,
    ClearAudio,
    ControlInput,
    Input,
    PlaybackReport,
    Update,
)
from services.gateway.engine.vocabulary import Control, ErrorCode
from services.gateway.metrics import STALLED_CLOSED
from services.gateway.realtime.config import RealtimeConfig, apply, check_model, resolve_voice
from services.gateway.realtime.formats import ClientError, decode_audio
from services.gateway.realtime.inbox import GONE_POLL_S, Inbox, peer_closed
from services.gateway.realtime.items import Pending, new_item_id, user_message
from services.gateway.realtime.outgoing import Outgoing, error, event_id

log = logging.getLogger(__name__)
# The most audio_end_ms a truncate may name (a day): longer than any reply.
MAX_AUDIO_END_MS = 86_400_000


class ClientGone(Exception):
    """The client closed or reset its connection."""


class RealtimeSession:
    def __init__(self, ws: web.WebSocketResponse, engine: ConversationEngine, caller: Caller, model: str,
                 transport: Any = None) -> None:
        self.ws = ws
        self.engine = engine
        self.caller = caller
        self.transport = transport  # the client's connection, watched while the reader waits for room
        self.config = RealtimeConfig(model=check_model(model or "voxtral", "model"))
        self.started = self.config  # what the engine session in progress was started with
        self.session_id = ""
        self.inbox = Inbox()
        self.out = self._outgoing()
        self.restarting = False
        self.restart_pending = False  # the audio settings changed before the engine session had started
        self.pending = Pending()  # what response.create answers
        self._send_lock = asyncio.Lock()
        self.stalled = False

    def _outgoing(self) -> Outgoing:
        return Outgoing(self.config.output_format.encode, self.config.turn_detection is None,
                        self.config.input_format.rate_hz)

    async def send(self, body: dict[str, Any]) -> None:
        """One server event; a client that reads nothing for the write timeout ends the session."""
        timeout_s = self.engine.settings.write_timeout_s
        async with self._send_lock:
            if self.stalled:
                raise Stalled("the client stopped reading")
            try:
                async with asyncio.timeout(timeout_s):
                    await self.ws.send_json({"event_id": event_id(), **body})
            except TimeoutError:
                self.stalled = True  # counted, logged, and the engine session ends
                STALLED_CLOSED.inc()
                log.warning("realtime client stopped reading: session closed",
                            extra={"session_id": self.session_id, "client": self.caller.client})
                self.inbox.end()
                raise Stalled(f"nothing could be delivered to the client for {timeout_s:g} s") from None

    async def run(self) -> None:
        """Until the engine session ends or the client goes: a client that goes ends it at once
        (what it sent and nobody will hear the answer to is dropped)."""
        reader = asyncio.ensure_future(self._read())
        conversing = asyncio.ensure_future(self._converse())
        try:
            await asyncio.wait({reader, conversing}, return_when=asyncio.FIRST_COMPLETED)
            if conversing.done():
                conversing.result()
        finally:
            for task in (reader, conversing):
                task.cancel()
            await asyncio.gather(reader, conversing, return_exceptions=True)

    async def _converse(self) -> None:
        try:
            self.inbox.put_now(self._request())
            while True:
                inbox = self.inbox
                out = self.out = self._outgoing()  # this engine session's items, in its audio format
                await self.engine.converse(self._inputs(inbox), functools.partial(self._on_event, out), self.caller)
                if not self.restarting:
                    return
                self.restarting = False
        except ServiceError as exc:  # refused, or ended (a client that stopped reading): said if it can be
            with contextlib.suppress(Exception):
                if self.stalled:
                    return
                await asyncio.wait_for(self.send(error(str(exc), kind="server_error",
                                                       code=ErrorCode.of_status(exc.status).value.lower())),
                                       NOTICE_WRITE_S)

    def _request(self) -> Input:
        self.started = self.config
        return self.config.request(self.session_id)

    async def _inputs(self, inbox: Inbox) -> AsyncIterator[Input]:
        while (item := await inbox.get()) is not None:
            yield item

    async def _on_event(self, out: Outgoing, event: Event) -> None:
        if isinstance(event, SessionStarted):
            kind = "session.updated" if self.session_id else "session.created"
            self.session_id = event.session_id
            await self.send({"type": kind, "session": self.started.describe(self.session_id)})
            if self.restart_pending:
                self.restart_pending = False
                self._restart()
            return
        for body in out.map(event):
            await self.send(body)

    def _restart(self) -> None:
        """The engine session starts again, resumed, with the new audio settings; a reply in the old
        format ends (cancelled). session.updated comes when the new one has started."""
        self.restarting = True
        old, self.inbox = self.inbox, Inbox()
        self.inbox.put_now(self._request())
        old.put_now(ControlInput(Control.INTERRUPT))
        old.end()
        self.pending.clear()

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type == WSMsgType.TEXT:
                await self._client_event(frame.data)
            elif frame.type == WSMsgType.BINARY:
                await self.send(error("send audio as input_audio_buffer.append events (base64)", param="type"))
            else:
                break

    async def _queue(self, item: Input) -> None:
        """Queue an input for the engine session, waiting for room: meanwhile the socket is not read.
        ClientGone when the client closes its connection during the wait."""
        inbox = self.inbox
        if inbox.has_room(item):
            inbox.put_now(item)
            return
        put = asyncio.ensure_future(inbox.put(item))
        try:
            while not put.done():
                await asyncio.wait({put}, timeout=GONE_POLL_S)
                if not put.done() and peer_closed(self.transport):
                    raise ClientGone("the client closed its connection")
        finally:
            put.cancel()

    async def _client_event(self, text: str) -> None:
        about = None
        try:
            try:
                body = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise ClientError(f"not JSON: {str(exc)[:120]}", code="invalid_json") from None
            if isinstance(body, dict) and isinstance(body.get("event_id"), str):
                about = body["event_id"][:64]
            if not isinstance(body, dict) or not isinstance(body.get("type"), str):
                raise ClientError("a client event is a JSON object with a string \"type\"", "type")
            await self._dispatch(body)
        except (Stalled, ClientGone):
            raise
        except ClientError as exc:
            await self.send(error(str(exc), code=exc.code, param=exc.param, about=about))
        except ServiceError as exc:  # a rule of the engine's, checked here first (an instructions limit, say)
            await self.send(error(str(exc), code=ErrorCode.of_status(exc.status).value.lower(), about=about))
        except Exception:  # a bug of ours: said and logged, and the session goes on
            log.exception("realtime event failed", extra={"session_id": self.session_id})
            await self.send(error("the event could not be handled (a server error)", kind="server_error",
                                  code="internal", about=about))

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
        if (new.voice, new.speed, new.instructions) != (old.voice, old.speed, old.instructions):
            await self._queue(Update(new.voice, new.speed, new.instructions))
        await self.send({"type": "session.updated", "session": new.describe(self.session_id)})

    async def _commit(self) -> None:
        if self.config.turn_detection is not None:
            raise ClientError("with turn detection on, the server commits the audio at the end of each turn "
                              "(set session.audio.input.turn_detection to null to commit yourself)",
                              code="input_audio_buffer_commit_not_allowed")
        self.pending.add_commit()
        item = new_item_id()
        self.out.pending_items.append(item)
        for body in self.out.committed(item):
            await self.send(body)

    async def _item_create(self, item: Any) -> None:
        message = user_message(item)
        if message.text:
            item_id = new_item_id()
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
        await self._commit()

    async def _response_create(self, response: Any) -> None:
        if response not in (None, {}) and not (isinstance(response, dict) and set(response) <= {"metadata"}):
            raise ClientError("response.create takes no response settings here: set them with session.update",
                              "response")
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
        await self._queue(PlaybackReport(turn_id, float(played)))  # what was heard: context keeps only that
        await self.send({"type": "conversation.item.truncated", "item_id": item_id,
                         "content_index": 0, "audio_end_ms": played})
