"""What the engine needs from the conversation store (services/common/store.py keeps it in Redis).
Every call answers: when the store is unreachable, a neutral value (empty, False, None, UNREACHABLE)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from services.common.store import Claim, Exchange


class Store(Protocol):
    async def ping(self) -> bool: ...

    async def claim(self, session_id: str, holder: str, owner: str, *, resume: bool) -> Claim:
        """Take a session's lease for one connection; a resume must name a known session of `owner`."""
        ...

    async def renew(self, session_id: str, holder: str, owner: str) -> bool | None:
        """Keep the lease; False: another holder has it; None: the store cannot tell."""
        ...

    async def release(self, session_id: str, holder: str) -> bool: ...

    async def context(self, session_id: str) -> list[Exchange]:
        """The last exchanges, oldest first."""
        ...

    async def append_exchange(self, session_id: str, exchange: Exchange) -> bool: ...

    async def reset_context(self, session_id: str) -> bool: ...

    async def replace_context(self, session_id: str, exchanges: list[Exchange]) -> bool:
        """The context is these exchanges now (one was revised: a reply's heard part known late)."""
        ...

    async def record_turn(self, session_id: str, turn_id: str, metrics: Mapping[str, float],
                          details: Mapping[str, object] | None = None) -> bool: ...

    async def owner(self, session_id: str) -> str | None: ...

    async def turns(self, session_id: str) -> list[dict[str, float | str]]:
        """Stored turn records, oldest first."""
        ...

    async def close(self) -> None: ...
