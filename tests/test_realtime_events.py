"""Client events the Realtime endpoint cannot honour: each gets an `error` naming the field, and
the session goes on (a real gateway; no stage is needed to judge an event)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.test_gateway_security import start
from tools.local_redis import RedisProcess

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
    ({"type": "conversation.item.create", "item": {"type": "function_call_output"}}, "item"),
    ({"type": "response.create", "response": {"instructions": "x"}}, "response"),
    ({"type": "response.cancel"}, None),
    ({"type": 7}, "type"),
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
