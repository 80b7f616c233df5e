"""A Realtime connection's life on the fake stages behind a real WebSocket server: what a client
sends before its session has started is applied, not lost."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest

from harness.local_redis import free_port
from services.common.g711 import ulaw_encode
from services.gateway.auth import Keys
from services.gateway.web import WebBridge
from tests.support.engine_client import engine, stages  # noqa: F401  (fixtures)
from tests.support.fake_stages import SAMPLES_PER_WORD, FakeStages

# Bad truncates of a real assistant item: each an error naming its field.
TRUNCATES: list[tuple[dict[str, Any], str]] = [
    ({"audio_end_ms": 10 ** 400}, "audio_end_ms"),
    ({"audio_end_ms": True}, "audio_end_ms"),
    ({"audio_end_ms": -1}, "audio_end_ms"),
    ({"audio_end_ms": 10, "content_index": -5}, "content_index"),
    ({"audio_end_ms": 10, "content_index": 10 ** 18}, "content_index"),
]
TELEPHONY = {"audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
                       "output": {"format": {"type": "audio/pcmu"}}}}


async def bodies_until(ws: aiohttp.ClientWebSocketResponse, last: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        body = json.loads((await ws.receive(timeout=10)).data)
        seen.append(body)
        if body["type"] == last:
            return seen


@pytest.fixture
async def realtime_port(stages: FakeStages):  # noqa: F811  (fixtures)
    conversations = engine(stages, web_port=free_port(), admission={"enabled": False})
    bridge = WebBridge(conversations.settings, conversations, Keys(None))
    yield await bridge.start()
    await bridge.stop()
    await conversations.close()


def typed(text: str) -> dict[str, Any]:
    return {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}


@pytest.mark.parametrize("attempt", range(4))
async def test_a_session_update_sent_on_connecting_is_applied_to_the_reply_audio(realtime_port: int,
                                                                                 attempt: int) -> None:
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(f"http://127.0.0.1:{realtime_port}/v1/realtime") as ws:
        await ws.send_json({"type": "session.update", "session": TELEPHONY})  # before session.created
        started = await bodies_until(ws, "session.updated")
        assert [b["type"] for b in started] == ["session.created", "session.updated"]
        assert started[0]["session"]["id"] == started[1]["session"]["id"]  # the same session, resumed
        assert started[1]["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        await ws.send_json(typed("Hello there."))
        await ws.send_json({"type": "response.create"})
        events = await bodies_until(ws, "response.done")
        audio = b"".join(base64.b64decode(b["delta"]) for b in events if b["type"] == "response.output_audio.delta")
        word = ulaw_encode(b"\x10\x00" * SAMPLES_PER_WORD)  # the fake TTS's word, as μ-law
        assert audio and audio == word * (len(audio) // len(word)), "reply audio is not in the format asked for"


async def test_bad_truncates_of_a_real_item_are_errors_naming_the_field(realtime_port: int) -> None:
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(f"http://127.0.0.1:{realtime_port}/v1/realtime") as ws:
        await bodies_until(ws, "session.created")
        await ws.send_json(typed("Hello there."))
        await ws.send_json({"type": "response.create"})
        events = await bodies_until(ws, "response.done")
        item_id = next(b["item"]["id"] for b in events if b["type"] == "response.output_item.added")
        for fields, param in TRUNCATES:
            await ws.send_str(json.dumps({"type": "conversation.item.truncate", "item_id": item_id, **fields}))
            body = (await bodies_until(ws, "error"))[-1]
            assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param, body
        await ws.send_json({"type": "conversation.item.truncate", "item_id": item_id, "audio_end_ms": 10,
                            "content_index": 0})
        truncated = (await bodies_until(ws, "conversation.item.truncated"))[-1]
        assert truncated["audio_end_ms"] == 10
