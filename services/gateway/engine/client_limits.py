"""The per-client session limits: open sessions counted by API key (from any address) and by
address (whatever the keys), so one client cannot take every session however it connects."""

from __future__ import annotations

from collections import Counter

from services.common.errors import echo
from services.gateway.config import GatewaySettings
from services.gateway.engine.caller import Caller
from services.gateway.engine.ends import ClientLimit


class ClientSessions:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._keys: Counter[str] = Counter()  # open sessions by API key (Caller.key)
        self._addresses: Counter[str] = Counter()  # ...and by address (Caller.peer)

    def check(self, caller: Caller) -> None:
        """ClientLimit when one more session of this caller is over either limit."""
        limit = self.settings.max_sessions_per_client
        if caller.key is not None and self._keys[caller.key] >= limit:
            raise ClientLimit(f"this client (its API key) holds its maximum of {limit} sessions: end one first")
        limit = self.settings.max_sessions_per_address
        if self._addresses[caller.peer] >= limit:
            raise ClientLimit(f"this client's address {echo(caller.peer)} holds its maximum of {limit} sessions: "
                              "end one first")

    def opened(self, caller: Caller) -> None:
        if caller.key is not None:
            self._keys[caller.key] += 1
        self._addresses[caller.peer] += 1

    def closed(self, caller: Caller) -> None:
        if caller.key is not None:
            _release(self._keys, caller.key)
        _release(self._addresses, caller.peer)


def _release(counts: Counter[str], name: str) -> None:
    """One session of `name` fewer; a name with none left is forgotten."""
    counts[name] -= 1
    if counts[name] <= 0:
        del counts[name]
