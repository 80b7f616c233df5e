"""The gateway's channels to a stage: mutual TLS with certificates made here, and the shared stage
token; the container health check over TLS. A real VAD service on an ephemeral port."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.healthcheck import check
from services.gateway.config import GatewaySettings
from services.gateway.engine.stages import StageError
from services.gateway.grpc_stages import GrpcStages
from services.vad.config import VadSettings
from services.vad.server import vad_service
from tests.support.serving import serve
from voice.v1 import vad_pb2

TOKEN = "t" * 32
NAME = "vad.voice.internal"  # the name in the stage's certificate, not the address dialled


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a stage certificate and a gateway (client) certificate it signed, and a stranger's."""
    d = tmp_path_factory.mktemp("pki")
    p = {name: d / name for name in ("ca.pem", "ca.key", "stage.pem", "stage.key", "gateway.pem", "gateway.key",
                                     "stranger.pem", "stranger.key")}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=voice test CA",
            "-keyout", str(p["ca.key"]), "-out", str(p["ca.pem"]))
    for who, usage in (("stage", "serverAuth"), ("gateway", "clientAuth")):
        csr = d / f"{who}.csr"
        ext = d / f"{who}.ext"
        ext.write_text(f"subjectAltName=DNS:{NAME}\nextendedKeyUsage={usage}\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", str(p[f"{who}.key"]),
                "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(p["ca.pem"]), "-CAkey", str(p["ca.key"]),
                "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(p[f"{who}.pem"]))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=stranger",
            "-keyout", str(p["stranger.key"]), "-out", str(p["stranger.pem"]))
    return p


def gateway_settings(target: str, **overrides: object) -> GatewaySettings:
    return GatewaySettings(auth_disabled=True, vad_target=target, **overrides)  # type: ignore[arg-type]  # test overrides


async def vad_info(stages: GrpcStages) -> vad_pb2.VadServiceGetInfoResponse:
    try:
        return await stages.vad.GetInfo(vad_pb2.VadServiceGetInfoRequest(), timeout=10, metadata=stages.meta)
    finally:
        await stages.close()


async def test_the_gateway_reaches_a_stage_over_mutual_tls_with_its_token(pki: dict[str, Path]) -> None:
    settings = VadSettings(port=0, grace_s=0, tls_cert_file=pki["stage.pem"], tls_key_file=pki["stage.key"],
                           tls_client_ca_file=pki["ca.pem"], auth_token=TOKEN)
    server, target = await serve(settings, vad_service(settings))
    trusted = {"stage_tls_ca_file": pki["ca.pem"], "stage_tls_server_name": NAME}
    client_cert = {"stage_tls_cert_file": pki["gateway.pem"], "stage_tls_key_file": pki["gateway.key"]}
    try:
        info = await vad_info(GrpcStages(gateway_settings(target, **trusted, **client_cert, stage_token=TOKEN)))
        assert info.max_streams > 0
        stages = GrpcStages(gateway_settings(target, **trusted, **client_cert, stage_token=TOKEN))
        stream = await stages.open_vad(16000, 800)  # a stream carries the token too
        await stream.send(bytes(3200))
        await stream.finish()
        assert [e async for e in stream.events()] == []
        await stages.close()

        for refused, code in (
            ({**trusted, **client_cert}, grpc.StatusCode.UNAUTHENTICATED),  # no token
            ({**trusted, **client_cert, "stage_token": "w" * 32}, grpc.StatusCode.UNAUTHENTICATED),
            ({**trusted, "stage_token": TOKEN}, grpc.StatusCode.UNAVAILABLE),  # no client certificate
            ({"stage_token": TOKEN}, grpc.StatusCode.UNAVAILABLE),  # plaintext
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await vad_info(GrpcStages(gateway_settings(target, **refused)))
            assert err.value.code() == code, refused
        with pytest.raises(StageError) as stage_err:
            stages = GrpcStages(gateway_settings(target, **trusted, **client_cert))
            try:
                stream = await stages.open_vad(16000, 800)
                await stream.send(bytes(3200))
                await stream.finish()
                _ = [e async for e in stream.events()]
            finally:
                await stages.close()
        assert stage_err.value.code == "UNAUTHENTICATED"

        port = target.rsplit(":", 1)[1]
        mine: dict[str, Any] = {"ca": pki["ca.pem"], "cert": pki["gateway.pem"], "key": pki["gateway.key"],
                                "server_name": NAME}
        assert await asyncio.to_thread(check, target, **mine) == "SERVING"  # health needs no token
        assert await asyncio.to_thread(check, target) == "UNREACHABLE"  # plaintext to a TLS port
        stranger = {**mine, "cert": pki["stranger.pem"], "key": pki["stranger.key"]}
        assert await asyncio.to_thread(check, target, **stranger) == "UNREACHABLE"
        env = {**os.environ, "HEALTHCHECK_TLS_CA_FILE": str(pki["ca.pem"]),
               "HEALTHCHECK_TLS_CERT_FILE": str(pki["gateway.pem"]),
               "HEALTHCHECK_TLS_KEY_FILE": str(pki["gateway.key"]), "HEALTHCHECK_TLS_SERVER_NAME": NAME}
        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.common.healthcheck", f"127.0.0.1:{port}", env=env,
            stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
        out, _ = await probe.communicate()
        assert probe.returncode == 0 and out.decode().strip() == "SERVING"
    finally:
        await server.stop(0)


async def test_a_stage_with_a_token_alone_refuses_calls_without_it(pki: dict[str, Path]) -> None:
    settings = VadSettings(port=0, grace_s=0, auth_token=TOKEN)
    server, target = await serve(settings, vad_service(settings))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await vad_info(GrpcStages(gateway_settings(target)))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and "gateway only" in err.value.details()
        assert (await vad_info(GrpcStages(gateway_settings(target, stage_token=TOKEN)))).max_streams > 0
        assert await asyncio.to_thread(check, target) == "SERVING"
    finally:
        await server.stop(0)


def test_stage_security_settings_are_checked(pki: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="go together"):
        gateway_settings("x:1", stage_tls_ca_file=pki["ca.pem"], stage_tls_cert_file=pki["gateway.pem"])
    with pytest.raises(ValueError, match="needs TLS"):
        gateway_settings("x:1", stage_tls_cert_file=pki["gateway.pem"], stage_tls_key_file=pki["gateway.key"])
    with pytest.raises(ValueError, match="at least 16"):
        VadSettings(auth_token="short")
    with pytest.raises(ValueError, match="needs TLS"):
        VadSettings(tls_client_ca_file=pki["ca.pem"])
