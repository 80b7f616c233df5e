"""Who may call a stage service: an optional shared token (metadata `authorization: Bearer`) that
the gateway sends and every stage checks, and TLS (mutual, when the stage asks for a client
certificate) on the gateway's channels. Health and reflection stay open for probes."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import grpc

from services.common.errors import ServiceError, Unauthenticated
from services.common.interceptor import Guard

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class TokenInterceptor(Guard):
    """A stage's side: every call but health and reflection must carry the shared token."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}".encode()

    def guards(self, method: str) -> bool:
        return not method.startswith(OPEN_PREFIXES)

    def admits(self, metadata: Any) -> bool:
        offered = next((v for k, v in metadata or () if k.lower() == "authorization"), "")
        return isinstance(offered, str) and hmac.compare_digest(self.expected, offered.encode())

    def refusal(self) -> ServiceError:
        return Unauthenticated("this service takes calls from the gateway only: missing or wrong stage token "
                               "(authorization: Bearer <token>)")


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    """The metadata a stage call carries: the shared token, when there is one."""
    return (("authorization", f"Bearer {token.strip()}"),) if token else None


def channel_credentials(ca_file: Path | None, cert_file: Path | None = None,
                        key_file: Path | None = None) -> grpc.ChannelCredentials | None:
    """TLS verified against `ca_file` (None: plaintext), with a client certificate when one is given."""
    if ca_file is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(),
        private_key=key_file.read_bytes() if key_file is not None else None,
        certificate_chain=cert_file.read_bytes() if cert_file is not None else None,
    )
