"""Sessions are owned: one live holder each (a lease in Redis), resumed only by the key that made
them, a limit per client, closed when their client stops reading; and a refused call always gets
its real code, even from a client still sending. Real gateway, real Redis, real gRPC."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import aiohttp
import grpc
import pytest

from harness.local_redis import RedisProcess
from tests.support.gateway_server import KEY, metadata, start
from voice.v1 import gateway_pb2, gateway_pb2_grpc

OTHER_KEY = "o" * 40
CONFIG = gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=16000))


def two_keys(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(f"# one key per client\n{KEY}\n\n{OTHER_KEY}\n")
    return path


class Session:
    """A Converse call kept open until `end`; the config first, optionally naming a session to resume."""

    def __init__(self, stub: gateway_pb2_grpc.GatewayServiceStub, key: str | None, resume: str = "") -> None:
        self.done = asyncio.Event()

        async def requests():
            yield gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(
                input_sample_rate_hz=16000, session_id=resume))
            await self.done.wait()

        self.call = stub.Converse(requests(), metadata=metadata(key) if key else (), timeout=30)

    async def first(self) -> gateway_pb2.ConverseResponse:
        return await self.call.read()

    async def started(self) -> str:
        first = await self.first()
        assert first.HasField("session_started"), first
        return first.session_started.session_id

    async def refused(self) -> tuple[gateway_pb2.Error, grpc.StatusCode, str]:
        """The in-band error, then the call's status and details."""
        first = await self.first()
        return first.error, await self.call.code(), await self.call.details()

    async def end(self) -> None:
        self.done.set()
        self.call.cancel()


async def test_a_live_session_cannot_be_joined_and_is_free_once_it_ends(redis_server: RedisProcess,
                                                                       tmp_path: Path) -> None:
    server, _ = await start(redis_server, api_key_file=two_keys(tmp_path))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            live = Session(stub, KEY)
            session_id = await live.started()
            error, code, details = await Session(stub, KEY, resume=session_id).refused()
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "live on another connection" in details
            assert error.code == gateway_pb2.ERROR_CODE_FAILED_PRECONDITION and not error.session_continues
            error, code, details = await Session(stub, OTHER_KEY, resume=session_id).refused()
            assert code == grpc.StatusCode.PERMISSION_DENIED and "another API key" in details
            await live.end()
            await asyncio.sleep(0.2)  # the gateway sees the cancel and gives the lease back
            error, code, _ = await Session(stub, OTHER_KEY, resume=session_id).refused()
            assert code == grpc.StatusCode.PERMISSION_DENIED  # still only its creator's, when free
            again = Session(stub, KEY, resume=session_id)
            first = await again.first()
            assert first.session_started.resumed and first.session_started.session_id == session_id
            await again.end()
    finally:
        await server.stop(0)


async def test_one_client_cannot_take_every_session(redis_server: RedisProcess, tmp_path: Path) -> None:
    server, settings = await start(redis_server, api_key_file=two_keys(tmp_path), max_sessions_per_client=2)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            held = [Session(stub, KEY) for _ in range(2)]
            for session in held:
                await session.started()
            error, code, details = await Session(stub, KEY).refused()
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "this client" in details
            assert error.code == gateway_pb2.ERROR_CODE_RESOURCE_EXHAUSTED
            other = Session(stub, OTHER_KEY)  # another key is another client
            await other.started()
            async with aiohttp.ClientSession() as http:  # the same rule on the WebSocket, before the upgrade
                with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                    await http.ws_connect(f"http://127.0.0.1:{settings.web_port}/ws?key={KEY}")
                assert err.value.status == 429
            await held[0].end()
            await asyncio.sleep(0.2)
            freed = Session(stub, KEY)
            await freed.started()
            for session in (*held[1:], other, freed):
                await session.end()
    finally:
        await server.stop(0)


async def test_a_client_that_stops_reading_is_closed_and_frees_its_session(redis_server: RedisProcess,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    server, _ = await start(redis_server, auth_disabled=True, write_timeout_s=1.0, max_sessions=1)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            bad = gateway_pb2.ConverseRequest(playback=gateway_pb2.PlaybackReport(turn_id="x" * 64, played_ms=-1))

            async def answers_without_end():
                yield CONFIG
                for _ in range(200_000):  # each is answered with an error event the client never reads
                    yield bad

            deaf = stub.Converse(answers_without_end(), timeout=60)
            async with asyncio.timeout(45):
                while True:  # the gateway holds its one session until it gives up on this client
                    await asyncio.sleep(0.5)
                    probe = Session(stub, None)
                    first = await probe.first()
                    await probe.end()
                    if first.HasField("session_started"):
                        break
            assert "client stopped reading: session closed" in caplog.text
            deaf.cancel()
    finally:
        await server.stop(0)


async def test_a_refused_key_reaches_a_client_that_is_still_sending_as_unauthenticated(
        redis_server: RedisProcess) -> None:
    server, _ = await start(redis_server, api_key=KEY)
    codes: collections.Counter[str] = collections.Counter()
    try:
        for _ in range(20):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                async def flood():
                    yield CONFIG
                    for _ in range(500):
                        yield gateway_pb2.ConverseRequest(audio=b"\0" * 3200)

                call = gateway_pb2_grpc.GatewayServiceStub(channel).Converse(flood(), metadata=metadata("wrong"),
                                                                            timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in call:
                        pass
                codes[err.value.code().name] += 1
    finally:
        await server.stop(0)
    assert codes == {"UNAUTHENTICATED": 20}


async def test_the_cli_prints_the_real_code_for_a_wrong_key(redis_server: RedisProcess, tmp_path: Path) -> None:
    import sys

    import numpy as np
    import soundfile as sf

    wav = tmp_path / "speech.wav"
    sf.write(wav, np.zeros(16000 * 3, dtype=np.int16), 16000)
    server, _ = await start(redis_server, api_key=KEY)
    try:
        for _ in range(5):
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "clients.converse", str(wav), "--target", f"127.0.0.1:{server.port}",
                "--api-key", "wrong", "--realtime", "0", stderr=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
            _, err = await asyncio.wait_for(cli.communicate(), 60)
            assert cli.returncode == 1
            assert err.decode().startswith("error: UNAUTHENTICATED: missing or wrong API key"), err.decode()
    finally:
        await server.stop(0)


async def test_session_metrics_are_read_only_by_the_sessions_key(redis_server: RedisProcess, tmp_path: Path) -> None:
    server, _ = await start(redis_server, api_key_file=two_keys(tmp_path))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            mine = Session(stub, KEY)
            session_id = await mine.started()

            async def metrics(key: str, sid: str) -> gateway_pb2.GetSessionMetricsResponse:
                return await stub.GetSessionMetrics(gateway_pb2.GetSessionMetricsRequest(session_id=sid),
                                                    metadata=metadata(key), timeout=5)

            assert (await metrics(KEY, session_id)).session_id == session_id
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await metrics(OTHER_KEY, session_id)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await metrics(KEY, "s" * 200_000)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(err.value.details()) < 200
            await mine.end()
    finally:
        await server.stop(0)
