"""The browser bridge: the page, and a WebSocket into the same conversation engine as gRPC.

WebSocket protocol: the client's first text frame is the session config as the proto's JSON
({"config": {"input_sample_rate_hz": 16000}}); binary frames are PCM16 mono audio; text frames
{"control": "CONTROL_ACTION_INTERRUPT"} are controls, {"text": "..."} a typed turn and
{"playback": {...}} a playback report. The server sends each event as a JSON text
frame {"type": "<event type>", ...the proto message's fields}; a "response_audio" frame is
followed by one binary frame holding its PCM16 audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from google.protobuf import json_format

from services.common.errors import ServiceError, Status
from services.common.interceptor import NOTICE_WRITE_S
from services.gateway.auth import Keys
from services.gateway.client_secrets import subprotocol_key
from services.gateway.config import GatewaySettings
from services.gateway.engine.caller import Caller
from services.gateway.engine.conversations import ConversationEngine
from services.gateway.engine.ends import ClientLimit
from services.gateway.engine.events import ErrorEvent, Event, ResponseAudio
from services.gateway.engine.inputs import Audio, Input, SessionRequest, Unreadable
from services.gateway.messages import to_input, to_message
from services.gateway.realtime.beta import wants_beta
from services.gateway.realtime.config import check_model, secret_request
from services.gateway.realtime.formats import ClientError
from services.gateway.realtime.session import ClientGone, RealtimeSession
from voice.v1 import gateway_pb2

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "page"
# What reading a text frame can raise: bad JSON, JSON that is not an object, too deep, unknown fields.
UNREADABLE_FRAME = (ValueError, TypeError, AttributeError, RecursionError, json_format.ParseError)


def event_json(event: Event) -> dict[str, Any]:
    """The event as the proto message's JSON, with its type; audio travels in a binary frame."""
    message = to_message(event)
    body = json_format.MessageToDict(getattr(message, event.type.value), preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    body.pop("audio", None)
    return {"type": event.type.value, **body}


def read_frame(text: str) -> Input:
    try:
        return to_input(json_format.ParseDict(json.loads(text), gateway_pb2.ConverseRequest()))
    except UNREADABLE_FRAME as exc:
        return Unreadable(f"cannot read that frame: {str(exc)[:200]}")


async def close(ws: web.WebSocketResponse, request: web.Request) -> None:
    """Close the socket; one whose client reads nothing (so the close frame cannot go) is dropped."""
    try:
        await asyncio.wait_for(ws.close(), NOTICE_WRITE_S)
    except (TimeoutError, ConnectionError):
        if request.transport is not None:
            request.transport.abort()


class WebBridge:
    def __init__(self, settings: GatewaySettings, engine: ConversationEngine, keys: Keys) -> None:
        self.settings = settings
        self.engine = engine
        self.keys = keys  # read once at start, as the gRPC interceptor does
        self.app = web.Application(client_max_size=settings.max_frame_bytes)
        self.ssl: ssl.SSLContext | None = None
        if settings.tls_cert_file and settings.tls_key_file:
            self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ssl.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        self.app.add_routes([
            web.get("/", self.index),
            web.get("/ws", self.websocket),
            web.get("/v1/realtime", self.realtime),
            web.post("/v1/realtime/client_secrets", self.client_secret),
            web.get("/healthz", self.health),
            web.get("/voices", self.voices),
            web.static("/static", PAGE, show_index=False),
        ])
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.settings.grace_s)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.host, self.settings.web_port, ssl_context=self.ssl)
        await site.start()
        # aiohttp keeps the bound port (web_port 0: an ephemeral one) only on the site's server.
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001 (see above)
        log.info("web page listening", extra={"address": f"http://{self.settings.host}:{self.port}/"})
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-cache"})

    async def health(self, request: web.Request) -> web.Response:
        admission = self.engine.admission
        return web.json_response({
            "sessions": self.engine.sessions,
            "stages": {stage.value: {**asdict(load), "session_share": admission.shares.get(stage)}
                       for stage, load in admission.loads.items()},
        })

    async def voices(self, request: web.Request) -> web.Response:
        """The TTS's voices, for the page's choice (empty while the TTS cannot be asked: its default then)."""
        return web.json_response({"voices": sorted(await self.engine.voices())})

    def admit(self, request: web.Request, hint: str, offered: str | None = None) -> Caller:
        """The caller of an upgrade request, refused with an HTTP status before the upgrade: 401 without a
        key, 429 over its own session limit, 503 at capacity (with Retry-After)."""
        caller = self.keys.caller({k.lower(): v for k, v in request.headers.items()}, request.remote or "",
                                  offered or request.query.get("key"))
        if caller is None:
            raise web.HTTPUnauthorized(text=f"missing or wrong API key: {hint}")
        try:
            self.engine.check_admission(caller)
        except ServiceError as exc:
            retry = getattr(exc, "retry_after_s", None)
            headers = {"Retry-After": str(retry)} if retry is not None else {}
            if isinstance(exc, ClientLimit):  # this client's own limit, not the gateway's capacity
                raise web.HTTPTooManyRequests(text=str(exc), headers=headers) from None
            raise web.HTTPServiceUnavailable(text=str(exc), headers=headers) from None
        return caller

    async def realtime(self, request: web.Request) -> web.WebSocketResponse:
        """The OpenAI Realtime-compatible endpoint (services/gateway/realtime)."""
        try:
            model = check_model(request.query.get("model", "voxtral"), "model")
        except ClientError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        # A browser's WebSocket carries its key as a subprotocol, and fails unless one it offered is answered.
        offered, key = subprotocol_key(request.headers.get("Sec-WebSocket-Protocol", ""))
        caller = self.admit(request, "send Authorization: Bearer <key> (the SDK's api_key), or the subprotocol "
                            "openai-insecure-api-key.<key or client secret>", key)
        answer = ("realtime",) if "realtime" in offered else tuple(offered[:1])
        ws = web.WebSocketResponse(max_msg_size=self.settings.max_frame_bytes, heartbeat=20, protocols=answer)
        await ws.prepare(request)
        try:
            await RealtimeSession(ws, self.engine, caller, model, request.transport,
                                  wants_beta(request.headers, offered)).run()
        except (ConnectionResetError, ClientGone):
            pass  # the client went away; the engine session has ended
        finally:
            await close(ws, request)
        return ws

    async def client_secret(self, request: web.Request) -> web.Response:
        """`POST /v1/realtime/client_secrets` (OpenAI's shape): a real key mints a short-lived one."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        key = self.keys.real_key(headers) if self.keys.required else self.keys.secrets.keys[0]
        if key is None:
            return error_json(401, "send Authorization: Bearer <key>: a real API key (not a client secret) mints one")
        try:
            body = await request.json() if request.can_read_body else {}
            ttl, session = secret_request(body)
        except (ValueError, ClientError) as exc:
            return error_json(400, str(exc), getattr(exc, "param", None))
        value, expires_at = self.keys.secrets.mint(key, ttl)
        return web.json_response({"value": value, "expires_at": expires_at, "session": session.describe("")})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        caller = self.admit(request, "open the page as /?key=<key>")
        ws = web.WebSocketResponse(max_msg_size=self.settings.max_frame_bytes, heartbeat=20)
        await ws.prepare(request)

        async def send(event: Event) -> None:
            await ws.send_json(event_json(event))
            if isinstance(event, ResponseAudio):
                await ws.send_bytes(event.pcm)

        async def inputs() -> AsyncIterator[Input]:
            configured = False
            async for frame in ws:
                if frame.type == WSMsgType.BINARY:
                    yield Audio(frame.data)
                elif frame.type == WSMsgType.TEXT:
                    item = read_frame(frame.data)
                    if isinstance(item, Unreadable) and not configured:
                        # No session yet, so nothing else writes: say so and wait for a readable config.
                        await send(ErrorEvent(Status.INVALID_ARGUMENT, item.message))
                        continue
                    configured = configured or isinstance(item, SessionRequest)
                    yield item
                else:
                    return

        try:
            await self.engine.converse(inputs(), send, caller)
        except ServiceError as exc:
            if not ws.closed:  # a client that reads nothing does not hold the bridge
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(send(ErrorEvent(exc.status.client, str(exc),
                                                           session_continues=False)), NOTICE_WRITE_S)
        except ConnectionResetError:
            pass  # the browser went away; converse() has already cancelled its work
        finally:
            await close(ws, request)
        return ws


def error_json(status: int, message: str, param: str | None = None) -> web.Response:
    """An HTTP error as OpenAI's API answers one."""
    kind = "invalid_request_error" if status == 400 else "authentication_error"
    return web.json_response({"error": {"type": kind, "message": message, "param": param, "code": None}},
                             status=status)
