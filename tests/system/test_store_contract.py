"""The engine's Store answered the same way by the Redis store (a real redis-server) and by the
in-memory store the engine's unit tests use: the fake cannot drift from what it stands for."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.local_redis import RedisProcess
from services.common.settings import RedisSettings
from services.common.store import Claim, Exchange, SessionStore
from services.gateway.engine.store import Store
from tests.support.memory_store import MemoryStore


@pytest.fixture(params=["redis", "memory"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    settings = RedisSettings(context_exchanges=3, turn_records=2, lease_ttl_s=30)
    if request.param == "memory":
        yield MemoryStore(settings)
        return
    server: RedisProcess = request.getfixturevalue("redis_server")
    backend = SessionStore(settings.model_copy(update={"url": server.url}))
    yield backend
    await backend.close()


async def test_claims_resumes_and_leases(store: Store) -> None:
    assert await store.claim("s", "conn1", "alice", resume=True) is Claim.UNKNOWN
    assert await store.claim("s", "conn1", "alice", resume=False) is Claim.OK
    assert await store.owner("s") == "alice"
    assert await store.claim("s", "conn2", "alice", resume=True) is Claim.HELD
    assert await store.claim("s", "conn2", "bob", resume=True) is Claim.FORBIDDEN
    assert await store.renew("s", "conn2", "alice") is False
    assert await store.renew("s", "conn1", "alice") is True
    assert await store.release("s", "conn2") is False
    assert await store.release("s", "conn1") is True
    assert await store.claim("s", "conn2", "alice", resume=True) is Claim.OK
    assert await store.owner("nobody") is None


async def test_context_and_turn_records_keep_the_last_ones(store: Store) -> None:
    assert await store.claim("s", "conn", "alice", resume=False) is Claim.OK
    for i in range(5):
        assert await store.append_exchange("s", Exchange(user=f"u{i}", assistant=f"a{i}", cut_off=i == 4))
        assert await store.record_turn("s", f"t{i}", {"e2e_ms": float(i)}, {"outcome": "completed"})
    assert [(e.user, e.cut_off) for e in await store.context("s")] == [("u2", False), ("u3", False), ("u4", True)]
    turns = await store.turns("s")
    assert [(t["turn_id"], t["e2e_ms"], t["outcome"]) for t in turns] == [("t3", 3.0, "completed"),
                                                                         ("t4", 4.0, "completed")]
    with pytest.raises(ValueError, match="unknown metric"):
        await store.record_turn("s", "t9", {"e2e": 1.0})
    revised = [Exchange(user="u3", assistant="a"), Exchange(user="u4", assistant="a4", cut_off=True)]
    assert await store.replace_context("s", revised)
    assert await store.context("s") == revised
    assert await store.reset_context("s")
    assert await store.context("s") == [] and await store.context("other") == []
    assert await store.ping()
