"""Client channels: round-robin over every resolved address, retries for unary calls on UNAVAILABLE."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

# Retrying a started stream could duplicate audio or text: only unary methods get a retry policy.
RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config(service: ServiceDescriptor, unary_timeout_s: float,
                   method_timeouts: Mapping[str, float] | None = None) -> dict[str, Any]:
    """A gRPC service config for one service: unary methods retry on UNAVAILABLE and have a deadline,
    `unary_timeout_s` unless `method_timeouts` names the method."""
    own = dict(method_timeouts or {})
    unknown = set(own) - {m.name for m in service.methods}
    if unknown:
        raise ValueError(f"{service.full_name} has no method {sorted(unknown)}")
    timeouts: dict[float, list[dict[str, str]]] = {}
    for m in service.methods:
        if not m.client_streaming and not m.server_streaming:
            timeouts.setdefault(own.get(m.name, unary_timeout_s), []).append(
                {"service": service.full_name, "method": m.name})
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if timeouts:
        config["methodConfig"] = [{"name": names, "retryPolicy": RETRY_POLICY, "timeout": f"{timeout:.3f}s"}
                                  for timeout, names in timeouts.items()]
    return config


def open_channel(
    target: str,
    service: ServiceDescriptor,
    *,
    max_message_bytes: int = 4 * 1024 * 1024,
    unary_timeout_s: float = 5.0,
    method_timeouts: Mapping[str, float] | None = None,
    keepalive_time_s: float = 20.0,
    credentials: grpc.ChannelCredentials | None = None,
    server_name: str | None = None,
) -> grpc.aio.Channel:
    """A channel to `target` (host:port, or dns:///name:port for every replica): TLS with
    `credentials` (checked against `server_name` when given), plaintext without."""
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(service_config(service, unary_timeout_s, method_timeouts))),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", int(keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # A restarted server is found again within a second, not after the default 20 s backoff.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.aio.secure_channel(target, credentials, options=options)
