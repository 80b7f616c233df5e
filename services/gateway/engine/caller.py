"""Who a session belongs to, as the adapters tell the engine (the keys themselves stay in auth)."""

from __future__ import annotations

from dataclasses import dataclass

# The identity of every caller when keys are off (local use).
OPEN = "open"


@dataclass(frozen=True)
class Caller:
    """Who opened a session: the key's identity and the address it came from."""

    identity: str
    peer: str

    @property
    def client(self) -> str:
        """Who this is in logs: the key's identity and its address."""
        return f"{self.identity}@{self.peer}"

    @property
    def key(self) -> str | None:
        """What the per-key session limit counts (None when keys are off: no key to count)."""
        return None if self.identity == OPEN else self.identity
