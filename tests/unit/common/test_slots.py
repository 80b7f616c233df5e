"""The model services' admission: slots, a bounded queue, priorities, deadlines and cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from services.common.errors import DeadlineExceeded, ResourceExhausted
from services.common.slots import SlotPool


def later(seconds: float) -> float:
    return time.monotonic() + seconds


async def test_a_freed_slot_goes_to_the_best_priority_then_the_first_arrival() -> None:
    pool = SlotPool(1, 8, "model")
    order: list[str] = []

    async def use(name: str, priority: int) -> None:
        async with pool.slot(later(5), priority):
            order.append(name)
            await asyncio.sleep(0.01)

    async with pool.slot(later(5)):
        waiters = [asyncio.create_task(use(n, p)) for n, p in
                   [("transcribe-1", 1), ("respond-1", 0), ("transcribe-2", 1), ("respond-2", 0)]]
        while pool.waiting < 4:
            await asyncio.sleep(0.001)
        assert pool.busy == 1
    await asyncio.gather(*waiters)
    assert order == ["respond-1", "respond-2", "transcribe-1", "transcribe-2"]
    assert pool.busy == 0 and pool.waiting == 0


async def test_a_full_queue_refuses_and_a_deadline_passes_in_the_queue() -> None:
    pool = SlotPool(1, 1, "model")
    async with pool.slot(later(5)):
        queued = asyncio.create_task(pool.slot(later(0.05)).__aenter__())
        while pool.waiting < 1:
            await asyncio.sleep(0.001)
        with pytest.raises(ResourceExhausted, match="1 running and 1 queued"):
            async with pool.slot(later(5)):
                pass
        with pytest.raises(DeadlineExceeded, match="queued for a slot"):
            await queued
        assert pool.waiting == 0
    assert pool.busy == 0


async def test_a_cancelled_waiter_loses_its_place_and_no_slot() -> None:
    pool = SlotPool(1, 4, "model")
    got: list[str] = []

    async def use(name: str) -> None:
        async with pool.slot(later(5)):
            got.append(name)

    async with pool.slot(later(5)):
        first, second = asyncio.create_task(use("first")), asyncio.create_task(use("second"))
        while pool.waiting < 2:
            await asyncio.sleep(0.001)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    await second
    assert got == ["second"] and pool.busy == 0


async def test_a_waiter_that_gives_up_as_the_slot_arrives_passes_it_on() -> None:
    pool = SlotPool(1, 4, "model")
    holder, gives_up, next_one = pool.slot(later(5)), pool.slot(later(5)), pool.slot(later(5))
    await holder.__aenter__()
    waiter = asyncio.create_task(gives_up.__aenter__())
    nxt = asyncio.create_task(next_one.__aenter__())
    while pool.waiting < 2:
        await asyncio.sleep(0.001)
    await holder.__aexit__(None, None, None)  # grants the slot to `waiter`...
    waiter.cancel()  # ...which is cancelled before it runs again
    await asyncio.gather(waiter, return_exceptions=True)
    await asyncio.wait_for(nxt, 1)  # so the slot went on to the next one
    assert pool.busy == 1
    await next_one.__aexit__(None, None, None)
    assert pool.busy == 0


async def test_a_slot_is_free_only_once_its_worker_thread_is_done() -> None:
    pool = SlotPool(1, 4, "model")
    release = threading.Event()
    with pytest.raises(DeadlineExceeded, match="ran past its deadline"):
        async with pool.slot(later(5)) as slot:
            await slot.run(release.wait, later(0.05))
    assert pool.busy == 1  # the caller gave up; the thread still works
    release.set()
    async with pool.slot(later(5)):  # waits for the thread, then gets the slot
        assert pool.busy == 1
    assert pool.busy == 0
    pool.close()


async def test_earliest_need_goes_first_across_callers_and_lateness_is_reported() -> None:
    pool = SlotPool(1, 8, "tts")
    order: list[str] = []
    now = time.monotonic()

    async def clause(name: str, need_in_s: float) -> None:
        async with pool.slot(later(5), priority=now + need_in_s, need_by=now + need_in_s):
            order.append(name)

    async with pool.slot(later(5)):
        waiters = [asyncio.create_task(clause(n, s)) for n, s in
                   [("a: third clause", 4.0), ("b: first clause", 0.0), ("a: second clause", 1.5)]]
        while pool.waiting < 3:
            await asyncio.sleep(0.001)
    await asyncio.gather(*waiters)
    assert order == ["b: first clause", "a: second clause", "a: third clause"]
    load = pool.load()
    assert load.slots == 1 and load.busy == 0 and load.queued == 0
    assert load.late_p95_ms > 0  # the clause needed at once waited; the others were early (not late)
    assert 0 < load.utilisation < 1


async def test_a_caller_that_goes_stops_its_running_work_and_the_slot_frees_when_it_ends() -> None:
    pool = SlotPool(1, 4, "tts")
    stopped = threading.Event()

    async def use() -> None:
        async with pool.slot(later(5)) as slot:
            await slot.run(lambda: stopped.wait(10), later(5), stop=stopped.set)

    task = asyncio.create_task(use())
    while pool.busy == 0 or not task.done() and stopped.is_set():
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert stopped.is_set()  # told to stop...
    async with pool.slot(later(5)):  # ...so the next caller gets the slot as soon as the work ends
        pass
    assert pool.busy == 0
    pool.close()


async def test_a_later_piece_of_a_served_request_is_never_refused_by_a_full_queue() -> None:
    pool = SlotPool(1, 0, "tts")
    async with pool.slot(later(5)):
        with pytest.raises(ResourceExhausted):
            async with pool.slot(later(5)):
                pass
        piece = pool.slot(later(5), continuing=True)
        continuing = asyncio.create_task(piece.__aenter__())
        while pool.waiting < 1:
            await asyncio.sleep(0.001)
    await asyncio.wait_for(continuing, 1)
    assert pool.busy == 1
    await piece.__aexit__(None, None, None)
    assert pool.busy == 0
