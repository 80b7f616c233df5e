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
    ControlInput,
    Input,
)
from services.gateway.engine.vocabulary import Control
from services.gateway.realtime.beta import to_beta
from services.gateway.realtime.client_events import ClientEvents
from services.gateway.realtime.config import RealtimeConfig, check_model
from services.gateway.realtime.formats import ClientError
from services.gateway.realtime.inbox import GONE_POLL_S, Inbox, peer_closed
from services.gateway.realtime.items import Pending
from services.gateway.realtime.outgoing import Outgoing, error, event_id

log = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client closed or reset its connection."""


class RealtimeSession(ClientEvents):
    def __init__(self, ws: web.WebSocketResponse, engine: ConversationEngine, caller: Caller, model: str,
                 transport: Any = None, beta: bool = False) -> None:
        self.ws = ws
        self.beta = beta  # events in the beta dialect (beta.py)
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
        self.item_ids: set[str] = set()
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
                    wire = to_beta(body) if self.beta else body
                    if wire is None:
                        return  # no such event in the beta
                    await self.ws.send_json({"event_id": event_id(), **wire})
            except TimeoutError:
                self.stalled = True  # counted, logged, and the engine session ends
                self.engine.metrics.stalled_closed.inc()
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
                                                       code=exc.status.client.value.lower())),
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
            await self.send(error(str(exc), code=exc.status.client.value.lower(), about=about))
        except Exception:  # a bug of ours: said and logged, and the session goes on
            log.exception("realtime event failed", extra={"session_id": self.session_id})
            await self.send(error("the event could not be handled (a server error)", kind="server_error",
                                  code="internal", about=about))
