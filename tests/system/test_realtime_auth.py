"""How clients that cannot set headers authenticate to /v1/realtime: a key (or a client secret) in
the `openai-insecure-api-key.` subprotocol, answered with the `realtime` subprotocol they offered; and
client secrets minted with the stock SDK's `client_secrets.create`, then used as a browser would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from openai import AsyncOpenAI, AuthenticationError, BadRequestError

from harness.local_redis import RedisProcess
from tests.support.gateway_server import KEY, start


@pytest.fixture
async def web(redis_server: RedisProcess) -> AsyncIterator[str]:
    server, settings = await start(redis_server, api_key=KEY)
    yield f"127.0.0.1:{settings.web_port}"
    await server.stop(0)


async def first_event(address: str, protocols: tuple[str, ...]) -> tuple[str | None, dict]:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://{address}/v1/realtime",
                                                               protocols=protocols) as ws:
        frame = await ws.receive(timeout=10)
        return ws.protocol, json.loads(frame.data)


async def test_a_key_in_the_subprotocol_opens_the_session_and_realtime_is_answered(web: str) -> None:
    protocol, event = await first_event(web, ("realtime", f"openai-insecure-api-key.{KEY}",
                                              "openai-beta.realtime-v1"))
    assert protocol == "realtime" and event["type"] == "session.created"
    protocol, event = await first_event(web, (f"openai-insecure-api-key.{KEY}",))  # no "realtime" offered
    assert protocol == f"openai-insecure-api-key.{KEY}" and event["type"] == "session.created"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await first_event(web, ("realtime", "openai-insecure-api-key.wrong"))
    assert refused.value.status == 401


async def test_a_client_secret_minted_with_the_sdk_opens_a_browser_style_session(web: str) -> None:
    sdk = AsyncOpenAI(api_key=KEY, base_url=f"http://{web}/v1")
    secret = await sdk.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 60},
                                                      session={"type": "realtime", "instructions": "Be brief."})
    assert secret.value.startswith("ek_") and secret.session.type == "realtime"
    assert secret.session.instructions == "Be brief."
    protocol, event = await first_event(web, ("realtime", f"openai-insecure-api-key.{secret.value}"))
    assert protocol == "realtime" and event["type"] == "session.created"
    with pytest.raises(AuthenticationError):  # a client secret mints nothing
        await AsyncOpenAI(api_key=secret.value, base_url=f"http://{web}/v1").realtime.client_secrets.create()
    with pytest.raises(BadRequestError):
        await sdk.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 5})
    with pytest.raises(AuthenticationError):
        await AsyncOpenAI(api_key="wrong", base_url=f"http://{web}/v1").realtime.client_secrets.create()
