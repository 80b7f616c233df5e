"""Client events the Realtime endpoint cannot honour: each gets an `error` naming the field, and
the session goes on (a real gateway; no stage is needed to judge an event)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from typing import Any

import aiohttp
import pytest

from harness.hostile_clients import flooder, masked_frame, upgrade
from harness.local_redis import RedisProcess
from tests.support.gateway_server import start

TD = "session.audio.input.turn_detection"
CASES: list[tuple[dict[str, Any], str | None]] = [
    ({"type": "session.update", "session": {"audio": {"output": {"speed": "fast"}}}}, "session.audio.output.speed"),
    ({"type": "session.update", "session": {"audio": {"output": {"speed": 99}}}}, "session.audio.output.speed"),
    ({"type": "session.update", "session": {"audio": {"output": {"voice": {"x": 1}}}}},
     "session.audio.output.voice"),
    ({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": [1]}}}}}, f"{TD}.eagerness"),
    ({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {
        "type": "server_vad", "create_response": "no"}}}}}, f"{TD}.create_response"),
    ({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {
        "type": "server_vad", "silence_duration_ms": 20}}}}}, f"{TD}.silence_duration_ms"),
    ({"type": "session.update", "session": {"audio": {"input": {"format": {"type": ["audio/pcm"]}}}}},
     "session.audio.input.format"),
    ({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}},
     "session.audio.input.format.rate"),
    ({"type": "session.update", "session": {"instructions": "x" * 5000}}, "session.instructions"),
    ({"type": "session.update", "session": {"prompt": {"id": "p"}}}, "session.prompt"),
    ({"type": "session.update", "session": [1]}, "session"),
    ({"type": "input_audio_buffer.append", "audio": 5}, "audio"),
    ({"type": "input_audio_buffer.commit"}, None),  # with turn detection on, the server commits
    ({"type": "conversation.item.truncate", "item_id": ["x"], "audio_end_ms": 5}, "item_id"),
    ({"type": "conversation.item.create", "item": {"type": "function_call_output"}}, "item.call_id"),
    ({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "c1", "output": 3}},
     "item.output"),
    ({"type": "conversation.item.create", "item": {"type": "function_call", "name": "f"}}, "item"),
    ({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text", "text": " "}]}},
     "item.content"),
    ({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text",
                                                                                "text": "x" * 4001}]}},
     "item.content"),
    ({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text", "text": 3}]}},
     "item.content[0].text"),
    ({"type": "response.create"}, None),  # nothing committed or typed
    ({"type": "response.create", "response": {"instructions": 5}}, "response.instructions"),
    ({"type": "response.create", "response": "now"}, "response"),
    ({"type": "response.cancel"}, None),
    ({"type": 7}, "type"),
    ({"type": "session.update", "session": {"audio": {"input": "pcm16"}}}, "session.audio.input"),
    ({"type": "session.update", "session": {"audio": {"input": [1]}}}, "session.audio.input"),
    ({"type": "session.update", "session": {"audio": {"output": 5}}}, "session.audio.output"),
    ({"type": "session.update", "session": {"modalities": 5, "voice": "alloy"}}, "session.modalities"),
    ({"type": "session.update", "session": {"model": "m" * 200_000}}, "session.model"),
    ({"type": "session.update", "session": {"model": 5}}, "session.model"),
]


@pytest.fixture
async def realtime_url(redis_server: RedisProcess):
    server, settings = await start(redis_server, auth_disabled=True)
    yield f"http://127.0.0.1:{settings.web_port}/v1/realtime"
    await server.stop(0)


async def next_body(ws: aiohttp.ClientWebSocketResponse, skip_outage: bool = True) -> dict[str, Any]:
    while True:
        frame = await ws.receive(timeout=10)
        assert frame.type == aiohttp.WSMsgType.TEXT, frame
        body = json.loads(frame.data)
        if skip_outage and body["type"] == "error" and body["error"]["type"] == "server_error":
            continue  # no VAD here: its outage is said once
        return body


async def test_each_bad_event_is_an_error_naming_its_field_and_the_session_goes_on(realtime_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(realtime_url) as ws:
        assert (await next_body(ws))["type"] == "session.created"
        for n, (event, param) in enumerate(CASES):
            await ws.send_json({**event, "event_id": f"e{n}"})
            body = await next_body(ws)
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", (event, body)
            assert body["error"]["param"] == param and body["error"]["event_id"] == f"e{n}", (event, body)
        await ws.send_json({"type": "session.update", "session": {"instructions": "Still here."}})
        updated = await next_body(ws)
        assert updated["type"] == "session.updated" and updated["session"]["instructions"] == "Still here."


async def test_a_clients_item_ids_are_kept(realtime_url: str) -> None:
    def message(item_id: str | int) -> dict[str, Any]:
        return {"type": "conversation.item.create", "item": {"id": item_id, "type": "message", "role": "user",
                                                              "content": [{"type": "input_text", "text": "Hello."}]}}

    async with aiohttp.ClientSession() as http, http.ws_connect(realtime_url) as ws:
        assert (await next_body(ws))["type"] == "session.created"
        await ws.send_json(message("msg_client-1"))
        added = await next_body(ws)
        assert added["type"] == "conversation.item.added" and added["item"]["id"] == "msg_client-1"
        await ws.send_json(message("msg_client-1"))
        while (taken := await next_body(ws))["type"] != "error":
            assert taken["type"] == "conversation.item.done"  # the first one's
        assert taken["error"]["code"] == "item_already_exists" and taken["error"]["param"] == "item.id"
        for bad in ("has space", "x" * 65, 7):
            await ws.send_json(message(bad))
            assert (await next_body(ws))["error"]["param"] == "item.id"


def deaf_client(port: int) -> socket.socket:
    """A WebSocket client on /v1/realtime that sends events and never reads a byte (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    upgrade(sock, port)
    sock.settimeout(2.0)
    frame = masked_frame(json.dumps({"type": "no.such.event"}))
    try:
        for _ in range(50_000):  # each is answered with an error nobody reads
            sock.sendall(frame)
    except TimeoutError:
        pass  # the gateway stopped reading it: its answers are stuck
    return sock


async def test_a_realtime_client_that_stops_reading_is_closed_and_frees_its_session(
        redis_server: RedisProcess, caplog: pytest.LogCaptureFixture) -> None:
    server, settings = await start(redis_server, auth_disabled=True, write_timeout_s=1.0, max_sessions=1)
    url = f"http://127.0.0.1:{settings.web_port}/v1/realtime"
    try:
        deaf = await asyncio.to_thread(deaf_client, settings.web_port)
        freed = False
        async with aiohttp.ClientSession() as http:
            for _ in range(60):
                try:
                    async with http.ws_connect(url) as probe:
                        freed = (await next_body(probe))["type"] == "session.created"
                        break
                except aiohttp.WSServerHandshakeError as err:  # still held: 503 at the gateway's maximum
                    assert err.status == 503
                    await asyncio.sleep(0.5)
        deaf.close()
        assert freed
        assert "realtime client stopped reading: session closed" in caplog.text
    finally:
        await server.stop(0)


async def sessions_open(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as reply:
        return int((await reply.json())["sessions"])


async def test_a_realtime_audio_flood_is_slowed_at_the_socket_and_its_session_ends_with_its_client(
        redis_server: RedisProcess) -> None:
    server, settings = await start(redis_server, auth_disabled=True)
    try:
        audio_s = 10  # each frame: 10 s of 24 kHz PCM16, base64 (640 KB)
        event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(48_000 * audio_s)).decode()}
        frame = masked_frame(json.dumps(event))
        sock, sent = await asyncio.to_thread(flooder, settings.web_port, frame, 3.0)
        # Taken: the burst (60 s), 8x real time for 3 s, and what socket buffers hold: far below what an
        # unread socket takes in 3 s (thousands of seconds of audio).
        assert sent * audio_s <= 600, f"{sent * audio_s} s of audio taken in 3 s"
        assert await sessions_open(settings.web_port) == 1
        sock.close()  # the client goes with its audio unread: the session ends now, not after that audio
        for _ in range(100):
            if await sessions_open(settings.web_port) == 0:
                break
            await asyncio.sleep(0.1)
        assert await sessions_open(settings.web_port) == 0
    finally:
        await server.stop(0)
