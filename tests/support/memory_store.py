"""The conversation store in memory, for unit tests of the engine (no redis-server): the same
answers as the Redis store (services/common/store.py), whose own tests run against a real server.
`reachable = False` makes every call answer as the Redis store does when Redis is down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from services.common.latency import check_metrics
from services.common.settings import RedisSettings
from services.common.store import Claim, Exchange


@dataclass
class _Session:
    owner: str
    context: list[Exchange] = field(default_factory=list)
    turns: list[dict[str, float | str]] = field(default_factory=list)
    holder: str | None = None
    held_until: float = 0.0


class MemoryStore:
    def __init__(self, settings: RedisSettings | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or RedisSettings()
        self.clock = clock
        self.reachable = True
        self.sessions: dict[str, _Session] = {}

    def _held_by_other(self, session: _Session, holder: str) -> bool:
        return session.holder not in (None, holder) and session.held_until > self.clock()

    def _hold(self, session: _Session, holder: str) -> None:
        session.holder, session.held_until = holder, self.clock() + self.settings.lease_ttl_s

    async def ping(self) -> bool:
        return self.reachable

    async def claim(self, session_id: str, holder: str, owner: str, *, resume: bool) -> Claim:
        if not self.reachable:
            return Claim.UNREACHABLE
        session = self.sessions.get(session_id)
        if resume and session is None:
            return Claim.UNKNOWN
        if resume and session is not None and session.owner != owner:
            return Claim.FORBIDDEN
        session = self.sessions.setdefault(session_id, _Session(owner))
        if self._held_by_other(session, holder):
            return Claim.HELD
        self._hold(session, holder)
        return Claim.OK

    async def renew(self, session_id: str, holder: str, owner: str) -> bool | None:
        if not self.reachable:
            return None
        session = self.sessions.setdefault(session_id, _Session(owner))  # made again when lost
        if self._held_by_other(session, holder):
            return False
        self._hold(session, holder)
        return True

    async def release(self, session_id: str, holder: str) -> bool:
        session = self.sessions.get(session_id)
        if not self.reachable or session is None or session.holder != holder:
            return False
        session.holder = None
        return True

    async def context(self, session_id: str) -> list[Exchange]:
        session = self.sessions.get(session_id)
        return list(session.context) if self.reachable and session else []

    async def append_exchange(self, session_id: str, exchange: Exchange) -> bool:
        if not self.reachable:
            return False
        session = self.sessions.setdefault(session_id, _Session(""))
        session.context = [*session.context, exchange][-self.settings.context_exchanges:]
        return True

    async def replace_context(self, session_id: str, exchanges: list[Exchange]) -> bool:
        if not self.reachable:
            return False
        self.sessions.setdefault(session_id, _Session("")).context = list(exchanges)[-self.settings.context_exchanges:]
        return True

    async def reset_context(self, session_id: str) -> bool:
        if not self.reachable:
            return False
        if session := self.sessions.get(session_id):
            session.context = []
        return True

    async def record_turn(self, session_id: str, turn_id: str, metrics: Mapping[str, float],
                          details: Mapping[str, object] | None = None) -> bool:
        values = check_metrics(metrics)
        if not self.reachable:
            return False
        record = {**(details or {}), "turn_id": turn_id, "at": time.time(), **values}
        session = self.sessions.setdefault(session_id, _Session(""))
        session.turns = [*session.turns, json.loads(json.dumps(record))][-self.settings.turn_records:]  # as stored
        return True

    async def owner(self, session_id: str) -> str | None:
        session = self.sessions.get(session_id)
        return session.owner or None if self.reachable and session else None

    async def turns(self, session_id: str) -> list[dict[str, float | str]]:
        session = self.sessions.get(session_id)
        return list(session.turns) if self.reachable and session else []

    async def close(self) -> None:
        pass
