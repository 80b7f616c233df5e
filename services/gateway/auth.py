"""Who is calling: API keys for the public endpoints (gRPC metadata, the WebSocket's query or
header) and the client a session belongs to. One decision, shared by every endpoint."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

from services.common.errors import ServiceError, Unauthenticated
from services.common.interceptor import Guard
from services.gateway.client_secrets import PREFIX, ClientSecrets
from services.gateway.engine.caller import OPEN, Caller

SCHEME = "bearer "
HINT = "send metadata 'authorization: Bearer <key>' (or 'x-api-key: <key>')"


def offered_key(headers: Mapping[str, str]) -> str | None:
    """The key in an Authorization: Bearer or x-api-key header (names lower-case)."""
    value = headers.get("authorization", "")
    if value.lower().startswith(SCHEME):
        return value[len(SCHEME):].strip()
    return headers.get("x-api-key")


def fingerprint(key: str) -> str:
    """A key's identity as logs and the store keep it: never the key itself."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string ("ipv4:10.0.0.7:5123", "ipv6:[::1]:5123") or an HTTP remote."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer or "unknown"
    host, _, _port = address.rpartition(":")
    return host.strip("[]") or address


class Keys:
    """The keys that may call (None: keys are off). Each key is its own identity, so a deployment
    can give each client its key and tell them apart (sessions, limits, logs)."""

    def __init__(self, keys: Sequence[str] | None, secrets: ClientSecrets | None = None) -> None:
        self.keys = tuple(keys) if keys else None
        self.secrets = secrets or ClientSecrets(self.keys)  # short-lived keys minted from these

    @property
    def required(self) -> bool:
        return self.keys is not None

    def identify(self, offered: str | None) -> str | None:
        """The identity of the offered key; None when it opens nothing."""
        if self.keys is None:
            return OPEN
        if offered is None:
            return None
        if offered.startswith(PREFIX):  # a client secret stands for the key that minted it
            offered = self.secrets.key_of(offered)
            if offered is None:
                return None
        matched = None
        for key in self.keys:  # every key compared, each in constant time
            if hmac.compare_digest(key.encode(), offered.encode()):
                matched = key
        return fingerprint(matched) if matched is not None else None

    def real_key(self, headers: Mapping[str, str]) -> str | None:
        """The real key in these headers (not a client secret); with keys off, any non-empty value."""
        offered = offered_key(headers)
        if offered is None or offered.startswith(PREFIX) or (self.keys is not None and self.identify(offered) is None):
            return None
        return offered

    def caller(self, headers: Mapping[str, str], peer: str, offered: str | None = None) -> Caller | None:
        """The caller of these headers (names lower-case) from `peer`; None when refused."""
        identity = self.identify(offered if offered is not None else offered_key(headers))
        return None if identity is None else Caller(identity, peer_host(peer))


def metadata_headers(metadata: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in (metadata or ()) if isinstance(v, str)}


def grpc_caller(keys: Keys, context: grpc.aio.ServicerContext) -> Caller:
    """The caller of a call the interceptor let through."""
    caller = keys.caller(metadata_headers(context.invocation_metadata()), context.peer())
    if caller is None:  # the interceptor refuses these first; checked again, never trusted
        raise Unauthenticated(f"missing or wrong API key: {HINT}")
    return caller


class ApiKeyInterceptor(Guard):
    """Guards one service's methods; health and reflection stay open for probes. `notice` gives a
    response message that tells a streaming caller the refusal in band."""

    def __init__(self, keys: Keys, service: str,
                 notice: Callable[[str, ServiceError], Any] | None = None) -> None:
        self.keys = keys
        self.prefix = f"/{service}/"
        self._notice = notice

    def guards(self, method: str) -> bool:
        return method.startswith(self.prefix)

    def admits(self, metadata: Any) -> bool:
        return self.keys.identify(offered_key(metadata_headers(metadata))) is not None

    def refusal(self) -> ServiceError:
        return Unauthenticated(f"missing or wrong API key: {HINT}")

    def notice(self, method: str, refused: ServiceError) -> Any | None:
        return self._notice(method, refused) if self._notice is not None else None
