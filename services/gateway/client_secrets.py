"""Short-lived client keys (OpenAI's `POST /v1/realtime/client_secrets`): a server holding a real
key mints one for a browser, which never sees the real key. A client secret is signed with the key
that minted it and names its expiry, so every gateway replica with the same keys accepts it and
none stores it: `ek_<payload>.<signature>`, refused once expired or when its key is gone."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence

PREFIX = "ek_"
# GA's bounds and default for expires_after.seconds.
MIN_TTL_S, MAX_TTL_S, DEFAULT_TTL_S = 10, 7200, 600
SUBPROTOCOL_KEY = "openai-insecure-api-key."  # how a browser's WebSocket carries a key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: str, payload: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


class ClientSecrets:
    """Mints and checks client secrets for `keys` (None: keys are off; a process secret signs)."""

    def __init__(self, keys: Sequence[str] | None, clock: Callable[[], float] = time.time) -> None:
        self.keys = tuple(keys) if keys else (secrets.token_urlsafe(32),)
        self.clock = clock

    def mint(self, key: str, ttl_s: int) -> tuple[str, int]:
        """A client secret standing for `key` (a key these were made with), and its expiry (epoch s)."""
        expires_at = int(self.clock()) + ttl_s
        payload = _b64(json.dumps({"k": _index_tag(key), "e": expires_at}, separators=(",", ":")).encode())
        return f"{PREFIX}{payload}.{_sign(key, payload)}", expires_at

    def key_of(self, secret: str) -> str | None:
        """The key a live client secret stands for; None when it is forged, expired or its key gone."""
        try:
            payload, signature = secret[len(PREFIX):].split(".", 1)
            claims = json.loads(_unb64(payload))
            tag, expires_at = str(claims["k"]), int(claims["e"])
        except (ValueError, KeyError, TypeError):
            return None
        found = None
        for key in self.keys:  # every key tried, each compared in constant time
            if hmac.compare_digest(_sign(key, payload), signature) and _index_tag(key) == tag:
                found = key
        return found if found is not None and self.clock() < expires_at else None


def _index_tag(key: str) -> str:
    """Which key signed it, without saying the key (checking needs no other lookup)."""
    return hashlib.sha256(b"client-secret:" + key.encode()).hexdigest()[:8]


def subprotocol_key(header: str) -> tuple[list[str], str | None]:
    """The subprotocols a WebSocket client offered, and the key among them, if any."""
    offered = [p.strip() for p in header.split(",") if p.strip()]
    key = next((p[len(SUBPROTOCOL_KEY):] for p in offered if p.startswith(SUBPROTOCOL_KEY)), None)
    return offered, key
