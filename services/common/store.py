"""Conversation context and turn latency records in Redis: a store the system can lose.

Every call is bounded by a hard time budget (one quick retry included). When Redis is
unreachable the call returns a neutral value (empty context, False) well inside 100 ms, the
failure is logged once per outage and counted, and the next call simply tries again, so
writes resume by themselves when Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import RedisError

from services.common.latency import METRICS, check_metrics
from services.common.settings import RedisSettings

log = logging.getLogger(__name__)

STORE_FAILURES = Counter("voice_store_failures_total", "Redis store calls that failed or timed out", ["op"])

T = TypeVar("T")


@dataclass(frozen=True)
class Exchange:
    """One user utterance and what the assistant actually said back."""

    user: str
    assistant: str
    turn_id: str = ""
    at: float = 0.0
    cut_off: bool = False  # the listener did not hear all of `assistant` (barge-in)
    user_unknown: bool = False  # the user's words could not be transcribed (not: they said nothing)
    # The reply's tool calls and their results, in order, before `assistant`: {"role": "assistant",
    # "calls": [{"id", "name", "arguments"}]} or {"role": "tool", "id", "text"}.
    tools: list[dict[str, Any]] = field(default_factory=list)


class Claim(StrEnum):
    """What claiming a session for one connection found."""

    OK = "ok"
    UNKNOWN = "unknown"  # a resume of a session the store does not know
    FORBIDDEN = "forbidden"  # a resume by another identity than the session's creator
    HELD = "held"  # another connection holds the session now
    UNREACHABLE = "unreachable"  # the store cannot tell


# One round trip, atomic: check a resume, take the lease, keep the session's record (and owner).
CLAIM = """
if ARGV[4] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 'unknown' end
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner and owner ~= ARGV[2] then return 'forbidden' end
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[3]) then
  if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'held' end
end
redis.call('HSETNX', KEYS[1], 'created', ARGV[5])
redis.call('HSETNX', KEYS[1], 'owner', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 'ok'
"""
# Renew the lease of its holder, and keep the session's record (and owner) whole: both are made
# again when the store lost them (a restart, or an outage at the session's start).
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSETNX', KEYS[2], 'created', ARGV[4])
redis.call('HSETNX', KEYS[2], 'owner', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SessionStore:
    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self._owners: dict[str, str] = {}  # session -> owner, for the sessions this process holds
        self.failures = 0
        self._available = True
        self._budget_s = settings.op_budget_ms / 1000
        timeout_s = settings.socket_timeout_ms / 1000
        self.redis = Redis.from_url(
            settings.url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(ConstantBackoff(0.005), 1),
            decode_responses=True,
            health_check_interval=0,
        )

    def _key(self, session_id: str, kind: str) -> str:
        return f"{self.settings.key_prefix}:session:{session_id}:{kind}"

    def stage_stream(self, metric: str) -> str:
        return f"{self.settings.key_prefix}:stage:{metric}"

    async def _call(self, op: str, action: Callable[[], Awaitable[T]], fallback: T) -> T:
        try:
            async with asyncio.timeout(self._budget_s):
                result = await action()
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            STORE_FAILURES.labels(op=op).inc()
            if self._available:
                log.warning("redis unavailable; going on without it",
                            extra={"op": op, "error": f"{type(exc).__name__}: {exc}"})
            self._available = False
            return fallback
        if not self._available:
            log.info("redis reachable again", extra={"op": op, "failures": self.failures})
            self._available = True
        return result

    async def ping(self) -> bool:
        return await self._call("ping", self.redis.ping, False)

    async def claim(self, session_id: str, holder: str, owner: str, *, resume: bool) -> Claim:
        """Take a session's lease for `holder` (one connection); a resume must name a known session
        created by `owner`."""
        keys = [self._key(session_id, "meta"), self._key(session_id, "lease")]
        args: list[str | int | float] = [holder, owner, int(self.settings.lease_ttl_s * 1000), int(resume), time.time(),
                self.settings.session_ttl_s]

        async def run() -> Claim:
            return Claim(await self.redis.eval(CLAIM, 2, *keys, *args))

        found = await self._call("claim", run, Claim.UNREACHABLE)
        if found is Claim.OK:
            self._owners[session_id] = owner
        return found

    async def renew(self, session_id: str, holder: str, owner: str) -> bool | None:
        """Keep holding the lease; False: another holder has it now; None: the store cannot tell."""
        async def run() -> bool | None:
            return bool(await self.redis.eval(
                RENEW, 2, self._key(session_id, "lease"), self._key(session_id, "meta"), holder,
                int(self.settings.lease_ttl_s * 1000), owner, time.time(), self.settings.session_ttl_s))

        renewed = await self._call("renew", run, None)
        if renewed:
            self._owners[session_id] = owner
        return renewed

    async def release(self, session_id: str, holder: str) -> bool:
        """Give the lease up (the connection ended): a resume may take the session at once."""
        self._owners.pop(session_id, None)

        async def run() -> bool:
            return bool(await self.redis.eval(RELEASE, 1, self._key(session_id, "lease"), holder))

        return await self._call("release", run, False)

    async def context(self, session_id: str) -> list[Exchange]:
        """The last exchanges, oldest first; reading counts as activity (refreshes the TTL)."""
        key = self._key(session_id, "context")

        async def run() -> list[Exchange]:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrange(key, 0, -1)
                self._touch(pipe, session_id, write=False)
                raw, *_ = await pipe.execute()
            return [Exchange(**json.loads(item)) for item in raw]

        return await self._call("context", run, [])

    async def append_exchange(self, session_id: str, exchange: Exchange) -> bool:
        key = self._key(session_id, "context")

        async def run() -> bool:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, json.dumps(asdict(exchange)))
                pipe.ltrim(key, -self.settings.context_exchanges, -1)
                self._touch(pipe, session_id)
                await pipe.execute()
            return True

        return await self._call("append_exchange", run, False)

    async def replace_context(self, session_id: str, exchanges: list[Exchange]) -> bool:
        key = self._key(session_id, "context")

        async def run() -> bool:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if exchanges:
                    pipe.rpush(key, *(json.dumps(asdict(e)) for e in exchanges[-self.settings.context_exchanges:]))
                self._touch(pipe, session_id)
                await pipe.execute()
            return True

        return await self._call("replace_context", run, False)

    async def reset_context(self, session_id: str) -> bool:
        async def run() -> bool:
            await self.redis.delete(self._key(session_id, "context"))
            return True

        return await self._call("reset_context", run, False)

    async def record_turn(self, session_id: str, turn_id: str, metrics: Mapping[str, float],
                          details: Mapping[str, object] | None = None) -> bool:
        """Keep the turn's latency record (last N per session) and add it to each stage's stream;
        `details` (JSON values: outcome, speculation, end-of-turn probability) ride along."""
        values = check_metrics(metrics)
        record: dict[str, object] = {**(details or {}), "turn_id": turn_id, "at": time.time(), **values}
        key = self._key(session_id, "turns")

        async def run() -> bool:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.rpush(key, json.dumps(record))
                pipe.ltrim(key, -self.settings.turn_records, -1)
                self._touch(pipe, session_id)
                for name, value in values.items():
                    pipe.xadd(
                        self.stage_stream(name),
                        {"session_id": session_id, "turn_id": turn_id, "ms": f"{value:.3f}"},
                        maxlen=self.settings.stage_stream_maxlen,
                        approximate=True,
                    )
                await pipe.execute()
            return True

        return await self._call("record_turn", run, False)

    async def owner(self, session_id: str) -> str | None:
        """The identity that created the session (None: unknown, or the store is unreachable)."""

        async def run() -> str | None:
            owner = await self.redis.hget(self._key(session_id, "meta"), "owner")
            return owner if isinstance(owner, str) else None  # decode_responses: a str when set

        return await self._call("owner", run, None)

    async def turns(self, session_id: str) -> list[dict[str, float | str]]:
        """Stored turn records, oldest first."""

        async def run() -> list[dict[str, float | str]]:
            return [json.loads(item) for item in await self.redis.lrange(self._key(session_id, "turns"), 0, -1)]

        return await self._call("turns", run, [])

    def _touch(self, pipe: Any, session_id: str, *, write: bool = True) -> None:
        """Activity: nothing of the session expires yet; a write also keeps its record whole (it is made
        again when Redis lost it, so the session can still be resumed)."""
        if write:
            pipe.hsetnx(self._key(session_id, "meta"), "created", time.time())
            if session_id in self._owners:
                pipe.hsetnx(self._key(session_id, "meta"), "owner", self._owners[session_id])
        for kind in ("meta", "context", "turns"):
            pipe.expire(self._key(session_id, kind), self.settings.session_ttl_s)

    async def close(self) -> None:
        await self.redis.aclose()


__all__ = ["METRICS", "Claim", "Exchange", "SessionStore"]
