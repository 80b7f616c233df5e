"""The openai Node SDK's two Realtime classes (npm, the committed lockfile), unchanged, against a
gateway on the shared system: the browser-style OpenAIRealtimeWebSocket (its key in the subprotocol)
and OpenAIRealtimeWS (the ws package, a Bearer header), each with a spoken turn with audio back,
a typed turn, and a typed question talked over while its answer plays (cancelled at the speech,
then the speech answered); the browser-style one again with a client secret minted from the real
key. The SDK only builds wss: URLs, so this gateway serves TLS (a certificate made for the test)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from pathlib import Path

import aiohttp

from harness.stack import Stack
from tests.support.gateway_server import KEY, stack_stages, start
from tests.support.realtime_audio import speech_file
from tests.support.realtime_log import barge_ins, check_responses

ROOT = Path(__file__).resolve().parents[2]


async def run_node(base: str, key: str, audio: Path, cert: Path) -> dict:
    """The Node client, while this process's event loop goes on serving the gateway it talks to."""
    node = await asyncio.create_subprocess_exec(
        "node", "--experimental-websocket", str(ROOT / "tests" / "node" / "realtime_clients.mjs"), base, key,
        str(audio), cwd=ROOT, env={**os.environ, "NODE_EXTRA_CA_CERTS": str(cert)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(node.communicate(), 400)
    assert node.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert "failure" not in result, result
    return result


async def test_the_node_sdks_realtime_classes_talk_unchanged(stack: Stack, certificate: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    cert, key = certificate
    server, settings = await start(stack.redis, api_key=KEY, tls_cert_file=cert, tls_key_file=key,
                                   **stack_stages(stack))
    base = f"https://127.0.0.1:{settings.web_port}/v1"
    audio = speech_file(tmp_path)
    try:
        result = await run_node(base, KEY, audio, cert)
        async with aiohttp.ClientSession() as http, http.post(
                f"{base}/realtime/client_secrets", json={}, headers={"Authorization": f"Bearer {KEY}"},
                ssl=ssl.create_default_context(cafile=str(cert))) as answer:
            secret = (await answer.json())["value"]
        with_secret = await run_node(base, secret, audio, cert)
    finally:
        await server.stop(0)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "node-realtime.json").write_text(json.dumps([result, with_secret], indent=1))
    for name, outcome in [*result.items(), ("websocket with a client secret", with_secret["websocket"])]:
        spoken, typed, events = outcome["spoken"], outcome["typed"], outcome["events"]
        assert spoken["status"] == "completed" and spoken["audioBytes"] > 24000, (name, outcome)
        assert spoken["transcript"].strip() and spoken["transcript"] == spoken["final"], (name, spoken)
        assert typed["status"] == "completed" and typed["audioBytes"] > 24000, (name, outcome)
        assert not [e for e in events if e["type"] == "error"], (name, events)
        assert check_responses(events) == ["completed", "completed", "cancelled", "completed"], (name, events)
        assert len(barge_ins(events)) == 1, (name, events)  # ended at the speech, no audio after it
