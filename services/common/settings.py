"""Settings shared by every service: pydantic-settings, one class per service, validated at start."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ServerSettings(BaseSettings):
    """gRPC server bootstrap settings; each service subclasses this with its own env prefix."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_nested_delimiter="__")

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in containers).")
    port: int = Field(0, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")
    max_message_bytes: int = Field(
        4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024,
        description="Largest gRPC message accepted or sent; larger gets RESOURCE_EXHAUSTED.",
    )
    grace_s: float = Field(10.0, ge=0, le=600, description="On SIGTERM, time in-flight calls get to finish.")
    keepalive_time_s: float = Field(20.0, gt=0, le=3600, description="Interval of HTTP/2 keepalive pings.")
    keepalive_timeout_s: float = Field(10.0, gt=0, le=600, description="Wait for a ping ack before closing.")
    max_concurrent_streams: int = Field(1024, ge=1, le=65536, description="Concurrent RPCs per connection.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics over HTTP; 0 turns it off.")
    log_level: LogLevel = "INFO"
    log_json: bool = Field(True, description="JSON log lines (false: plain text for a terminal).")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain: serve TLS (with tls_key_file).")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: Path | None = Field(None, description="With TLS: callers must present a certificate "
                                            "signed by this CA (mutual TLS).")
    auth_token: SecretStr | None = Field(None, description="A stage service: callers must send this shared token "
                                         "(metadata authorization: Bearer); the gateway's GATEWAY_STAGE_TOKEN.")

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs TLS: set tls_cert_file and tls_key_file too")
        if self.auth_token is not None and len(self.auth_token.get_secret_value().strip()) < 16:
            raise ValueError("auth_token must be at least 16 characters (or unset)")
        for path in (self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} does not exist")
        return self


class RedisSettings(BaseModel):
    """The conversation store. Redis is a store the system can lose: timeouts are short."""

    model_config = {"frozen": True}

    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// URL.")
    key_prefix: str = Field("voice", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    op_budget_ms: int = Field(90, ge=5, le=5000, description="Hard bound on one store call, retry included.")
    socket_timeout_ms: int = Field(40, ge=1, le=5000, description="Connect and read timeout per attempt.")
    context_exchanges: int = Field(5, ge=1, le=100, description="Exchanges kept per session (seed: 5).")
    turn_records: int = Field(20, ge=1, le=1000, description="Turn latency records kept per session (seed: 20).")
    session_ttl_s: int = Field(1800, ge=10, le=7 * 86400, description="Idle time before a session is forgotten.")
    lease_ttl_s: float = Field(10.0, ge=1, le=600, description="A live session's lease: renewed while it is "
                               "open, so a gateway that died frees its sessions for a resume within this time.")
    stage_stream_maxlen: int = Field(10000, ge=100, le=10_000_000, description="Entries per stage stream.")


S = TypeVar("S", bound=BaseSettings)


def describe_errors(cls: type[BaseSettings], error: ValidationError) -> str:
    """One line per bad value, naming the environment variable an operator must fix."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")
    lines = [f"invalid {cls.__name__} settings:"]
    for err in error.errors():
        name = prefix + delimiter.join(str(part) for part in err["loc"])
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {name.upper()}: {err['msg']}{shown}")
    return "\n".join(lines)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment; exit with a readable message on a bad value."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        print(describe_errors(cls, error), file=sys.stderr)
        raise SystemExit(2) from None
