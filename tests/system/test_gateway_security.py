"""API keys on the gateway's gRPC and WebSocket endpoints, and TLS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.local_redis import RedisProcess
from services.common.settings import load_settings
from services.gateway.config import GatewaySettings
from tests.support.gateway_server import KEY, metadata, start
from voice.v1 import gateway_pb2, gateway_pb2_grpc


async def converse_once(channel: grpc.aio.Channel, meta=()) -> gateway_pb2.ConverseResponse:
    async def requests():
        yield gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=16000))

    call = gateway_pb2_grpc.GatewayServiceStub(channel).Converse(requests(), metadata=meta, timeout=10)
    return await call.read()


async def test_grpc_calls_need_the_key_but_health_does_not(redis_server: RedisProcess) -> None:
    server, _ = await start(redis_server, api_key=KEY)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            for meta in ((), metadata("wrong"), (("x-api-key", "wrong"),)):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.GetSessionMetrics(gateway_pb2.GetSessionMetricsRequest(session_id="x"),
                                                 metadata=meta, timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "authorization: Bearer <key>" in err.value.details()
                notice = await converse_once(channel, meta)  # said in band first, then the status
                assert notice.error.code == gateway_pb2.ERROR_CODE_UNAUTHENTICATED
                assert not notice.error.session_continues
            reply = await stub.GetSessionMetrics(gateway_pb2.GetSessionMetricsRequest(session_id="x"),
                                                 metadata=metadata(KEY), timeout=5)
            assert reply.turns == 0
            started = await converse_once(channel, (("x-api-key", KEY),))
            assert len(started.session_started.session_id) == 32  # 128 random bits, hex
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


async def test_session_ids_are_random(redis_server: RedisProcess) -> None:
    server, _ = await start(redis_server, auth_disabled=True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            ids = {(await converse_once(channel)).session_started.session_id for _ in range(5)}
        assert len(ids) == 5 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    finally:
        await server.stop(0)


async def test_websocket_needs_the_key(redis_server: RedisProcess, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    server, settings = await start(redis_server, api_key_file=key_file)
    base = f"http://127.0.0.1:{settings.web_port}"
    try:
        async with aiohttp.ClientSession() as http:
            assert (await http.get(f"{base}/")).status == 200  # the page itself is public
            for url in (f"{base}/ws", f"{base}/ws?key=wrong"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                    await http.ws_connect(url)
                assert err.value.status == 401
            async with http.ws_connect(f"{base}/ws?key={KEY}") as ws:
                await ws.send_json({"config": {"input_sample_rate_hz": 16000}})
                event = await ws.receive_json(timeout=10)
                assert event["type"] == "session_started" and len(event["session_id"]) == 32
    finally:
        await server.stop(0)


def test_no_key_and_no_explicit_opt_out_is_refused_at_start(monkeypatch, capsys) -> None:
    for name in ("GATEWAY_API_KEY", "GATEWAY_API_KEY_FILE", "GATEWAY_AUTH_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit):
        load_settings(GatewaySettings)
    assert "GATEWAY_AUTH_DISABLED" in capsys.readouterr().err


async def test_tls(redis_server: RedisProcess, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server, _ = await start(redis_server, api_key=KEY, tls_cert_file=cert, tls_key_file=key)
    try:
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        async with grpc.aio.secure_channel(f"localhost:{server.port}", credentials) as channel:
            started = await converse_once(channel, metadata(KEY))
            assert started.session_started.session_id
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await converse_once(channel, metadata(KEY))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


@pytest.mark.parametrize("how", ["empty key", "blank key", "empty key file"])
def test_an_empty_key_stops_the_gateway_instead_of_turning_auth_off(how: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if how == "empty key file":
        (tmp_path / "key").write_text("  \n")
        env["GATEWAY_API_KEY_FILE"] = str(tmp_path / "key")
    else:
        env["GATEWAY_API_KEY"] = "" if how == "empty key" else "   "
    gateway = subprocess.run([sys.executable, "-m", "services.gateway"], env={**env, "GATEWAY_PORT": "0"},
                             capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert gateway.returncode == 2
    assert "is empty" in gateway.stderr or "holds no key" in gateway.stderr


async def test_clients_that_send_nothing_are_closed_and_free_their_session(redis_server: RedisProcess) -> None:
    server, settings = await start(redis_server, auth_disabled=True, idle_timeout_s=0.5, max_sessions=2)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            never = asyncio.Event()

            async def config_then_nothing():
                yield gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=16000))
                await never.wait()

            async def nothing():
                await never.wait()
                yield gateway_pb2.ConverseRequest()

            held = [stub.Converse(config_then_nothing(), timeout=30) for _ in range(2)]  # every session taken
            for call in held:
                assert (await call.read()).HasField("session_started")
                farewell = await call.read()
                while farewell.error.session_continues:  # no VAD here: its outage is said first
                    farewell = await call.read()
                assert farewell.error.code == gateway_pb2.ERROR_CODE_DEADLINE_EXCEEDED
                assert "nothing received for 0.5 s" in farewell.error.message
                assert not farewell.error.session_continues
                assert await call.code() == grpc.StatusCode.OK
            mute = stub.Converse(nothing(), timeout=30)
            assert (await mute.read()).error.code == gateway_pb2.ERROR_CODE_DEADLINE_EXCEEDED  # in band, then:
            assert await mute.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert (await converse_once(channel)).HasField("session_started")  # the sessions were freed
            never.set()
    finally:
        await server.stop(0)
