"""What a session remembers, on the in-memory store: writes reach the store in the order they were made."""

from __future__ import annotations

import asyncio

from services.common.store import Exchange
from services.gateway.config import GatewaySettings
from services.gateway.engine.memory import Memory
from services.gateway.metrics import GatewayMetrics
from tests.support.memory_store import MemoryStore


class SlowStore(MemoryStore):
    """An append that reaches the store only when `arrive` is set (a Redis round trip that takes a while)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrive = asyncio.Event()

    async def append_exchange(self, session_id: str, exchange: Exchange) -> bool:
        await self.arrive.wait()
        return await super().append_exchange(session_id, exchange)


async def test_a_revision_made_while_the_exchange_is_being_written_reaches_the_store_after_it() -> None:
    store = SlowStore()
    memory = Memory(GatewaySettings(auth_disabled=True), store, "s1", "owner", GatewayMetrics())
    remembering = asyncio.create_task(memory.remember("t1", "where to?", "Paris is lovely today", cut_off=True))
    await asyncio.sleep(0)
    revising = asyncio.create_task(memory.revise("t1", "Paris", cut_off=True))  # a late truncate
    await asyncio.sleep(0.01)
    store.arrive.set()
    await asyncio.gather(remembering, revising)
    kept = [(e.turn_id, e.assistant) for e in await store.context("s1")]
    assert kept == [("t1", "Paris")] == [(e.turn_id, e.assistant) for e in memory.context]
