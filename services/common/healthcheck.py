"""Exit 0 when a gRPC server reports SERVING: for container HEALTHCHECKs and `make run`."""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout_s: float = 2.0) -> str:
    """The health status name, or UNREACHABLE."""
    with grpc.insecure_channel(target) as channel:
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
    args = parser.parse_args()
    status = check(args.target, args.service, args.timeout)
    print(status)
    sys.exit(0 if status == "SERVING" else 1)


if __name__ == "__main__":
    main()
