"""The browser bridge: the page, and a WebSocket into the very same session code as gRPC.

WebSocket protocol: the client's first text frame is the session config as the proto's JSON
({"config": {"input_sample_rate_hz": 16000}}); binary frames are PCM16 mono audio; text frames
{"control": "CONTROL_ACTION_INTERRUPT"} are controls. The server sends each event as a JSON text
frame {"type": "<event>", ...fields}; a "response_audio" frame is followed by one binary frame
holding its PCM16 audio.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import WSMsgType, web
from google.protobuf import json_format

from services.common.errors import ServiceError
from services.gateway.auth import key_matches, offered_key
from services.gateway.config import GatewaySettings
from services.gateway.server import GatewayServicer
from voice.v1 import gateway_pb2

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "web"


def event_json(message: gateway_pb2.ConverseResponse) -> dict[str, object]:
    kind = message.WhichOneof("payload")
    body = json_format.MessageToDict(getattr(message, kind), preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    body.pop("audio", None)
    return {"type": kind, **body}


class WebBridge:
    def __init__(self, settings: GatewaySettings, servicer: GatewayServicer, key: str | None) -> None:
        self.settings = settings
        self.servicer = servicer
        self.key = key  # read once at start, as the gRPC interceptor does
        self.app = web.Application(client_max_size=settings.max_message_bytes)
        self.ssl = None
        if settings.tls_cert_file and settings.tls_key_file:
            import ssl

            self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ssl.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        self.app.add_routes([
            web.get("/", self.index),
            web.get("/ws", self.websocket),
            web.get("/healthz", self.health),
            web.static("/static", STATIC, show_index=False),
        ])
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.settings.grace_s)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.host, self.settings.web_port, ssl_context=self.ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the bound port
        log.info("web page listening", extra={"address": f"http://{self.settings.host}:{self.port}/"})
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"sessions": self.servicer.sessions})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        if self.key is not None:
            offered = request.query.get("key") or offered_key({k.lower(): v for k, v in request.headers.items()})
            if not key_matches(self.key, offered):
                raise web.HTTPUnauthorized(text="missing or wrong API key: open the page as /?key=<key>")
        ws = web.WebSocketResponse(max_msg_size=self.settings.max_message_bytes, heartbeat=20)
        await ws.prepare(request)

        async def requests() -> AsyncIterator[gateway_pb2.ConverseRequest]:
            async for frame in ws:
                if frame.type == WSMsgType.BINARY:
                    yield gateway_pb2.ConverseRequest(audio=frame.data)
                elif frame.type == WSMsgType.TEXT:
                    try:
                        yield json_format.ParseDict(json.loads(frame.data), gateway_pb2.ConverseRequest())
                    except (ValueError, json_format.ParseError) as exc:
                        await ws.send_json({"type": "error", "code": "ERROR_CODE_INVALID_ARGUMENT",
                                            "message": f"cannot read that frame: {exc}", "session_continues": True})
                else:
                    return

        async def write(message: gateway_pb2.ConverseResponse) -> None:
            await ws.send_json(event_json(message))
            if message.WhichOneof("payload") == "response_audio":
                await ws.send_bytes(message.response_audio.audio)

        try:
            await self.servicer.converse(requests(), write)
        except ServiceError as exc:
            if not ws.closed:
                await ws.send_json({"type": "error", "code": f"ERROR_CODE_{exc.code.name}", "message": str(exc),
                                    "session_continues": False})
        except ConnectionResetError:
            pass  # the browser went away; converse() has already cancelled its work
        finally:
            await ws.close()
        return ws
