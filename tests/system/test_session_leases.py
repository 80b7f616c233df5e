"""A session's lease as Redis holds it (a real redis-server): it lapses when its holder stops
renewing, is taken again after Redis restarts empty, and is given back at a clean end."""

from __future__ import annotations

import asyncio

import pytest

from harness.local_redis import RedisProcess
from services.common.errors import FailedPrecondition
from services.common.store import Exchange, SessionStore
from services.gateway.engine.caller import Caller
from services.gateway.engine.events import SessionStarted
from services.gateway.engine.inputs import SessionRequest
from tests.support.engine_client import RATE, Client, engine
from tests.support.fake_stages import FakeStages

ALICE = Caller("key-alice", "10.0.0.1")
BOB = Caller("key-bob", "10.0.0.1")


async def test_the_lease_lapses_when_its_holder_stops_renewing(stages: FakeStages, redis: RedisProcess) -> None:
    conversations = engine(stages, redis, store={"lease_ttl_s": 1.0})
    holder = Client(conversations, caller=ALICE)
    session_id = (await holder.wait_for(SessionStarted)).session_id
    await asyncio.sleep(1.5)  # renewed meanwhile: still held
    with pytest.raises(FailedPrecondition):
        await Client(conversations, SessionRequest(RATE, resume_id=session_id), caller=ALICE).task
    holder.task.cancel()  # a gateway that died: the lease is not given back, it lapses
    await asyncio.gather(holder.task, return_exceptions=True)
    lease = f"voice:session:{session_id}:lease"
    store = conversations.store
    assert isinstance(store, SessionStore)  # the lease as Redis holds it
    assert await store.redis.get(lease) is None  # a clean end gives it back at once
    await store.redis.set(lease, "a-dead-gateway", px=1000)
    with pytest.raises(FailedPrecondition):
        await Client(conversations, SessionRequest(RATE, resume_id=session_id), caller=ALICE).task
    await asyncio.sleep(1.1)
    resumed = Client(conversations, SessionRequest(RATE, resume_id=session_id), caller=ALICE)
    assert (await resumed.wait_for(SessionStarted)).resumed
    await store.redis.flushall()  # Redis restarted: the renewal takes the lease again, the record keeps its owner
    await asyncio.sleep(0.5)
    assert await store.redis.get(lease) is not None
    await store.append_exchange(session_id, Exchange(user="hi", assistant="hello"))  # any write of the session
    assert await store.redis.hget(f"voice:session:{session_id}:meta", "owner") == ALICE.identity
    await resumed.end()


async def test_a_session_started_without_redis_takes_its_lease_when_redis_is_back_and_gives_it_up(
        stages: FakeStages, redis: RedisProcess) -> None:
    conversations = engine(stages, redis, store={"lease_ttl_s": 1.0})
    redis.stop()
    try:
        client = Client(conversations, caller=ALICE)
        session_id = (await client.wait_for(SessionStarted)).session_id  # the store is losable: it goes on
    finally:
        redis.start()
    lease = f"voice:session:{session_id}:lease"
    store = conversations.store
    assert isinstance(store, SessionStore)  # the lease as Redis holds it
    for _ in range(50):  # the next renewal takes the lease
        if await store.redis.get(lease):
            break
        await asyncio.sleep(0.05)
    assert await store.redis.get(lease)
    await client.end()
    assert await store.redis.get(lease) is None  # given back at the end: a resume can follow
    resumed = Client(conversations, SessionRequest(RATE, resume_id=session_id), caller=ALICE)
    assert (await resumed.wait_for(SessionStarted)).resumed
    await resumed.end()


