"""Exit 0 when a gRPC server reports SERVING: for container HEALTHCHECKs and `make run`.

A server that serves TLS is checked over TLS: --tls-ca (or HEALTHCHECK_TLS_CA_FILE) names the CA,
--tls-cert/--tls-key a client certificate when the server requires one (mutual TLS), and
--server-name the name its certificate is checked against (a container checks 127.0.0.1)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _channel(target: str, ca: Path | None, cert: Path | None, key: Path | None,
             server_name: str | None) -> grpc.Channel:
    if ca is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        ca.read_bytes(), key.read_bytes() if key else None, cert.read_bytes() if cert else None)
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, credentials, options=options)


def check(target: str, service: str = "", timeout_s: float = 2.0, *, ca: Path | None = None,
          cert: Path | None = None, key: Path | None = None, server_name: str | None = None) -> str:
    """The health status name, or UNREACHABLE."""
    with _channel(target, ca, cert, key, server_name) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as err:
            return "UNREACHABLE" if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                else err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", help="host:port")
    parser.add_argument("--service", default="", help="service name; empty for the whole server")
    parser.add_argument("--timeout", type=float, default=2.0)
    env = os.environ.get
    parser.add_argument("--tls-ca", type=Path, default=env("HEALTHCHECK_TLS_CA_FILE") or None)
    parser.add_argument("--tls-cert", type=Path, default=env("HEALTHCHECK_TLS_CERT_FILE") or None)
    parser.add_argument("--tls-key", type=Path, default=env("HEALTHCHECK_TLS_KEY_FILE") or None)
    parser.add_argument("--server-name", default=env("HEALTHCHECK_TLS_SERVER_NAME") or None)
    args = parser.parse_args()
    status = check(args.target, args.service, args.timeout, ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key,
                   server_name=args.server_name)
    print(status)
    sys.exit(0 if status == "SERVING" else 1)


if __name__ == "__main__":
    main()
