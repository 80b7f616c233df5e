"""A bounded number of work slots with a bounded queue in front: the model services' admission.

Blocking model work runs in a worker thread that owns its slot: when the caller gives up
(deadline, cancellation) the slot is released only once that thread has really finished,
so a service never runs more work at once than it has slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from services.common.errors import DeadlineExceeded, ResourceExhausted

T = TypeVar("T")


class SlotPool:
    """Slots are handed out by priority (lower first), then in arrival order."""

    def __init__(self, slots: int, max_queue: int, name: str) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.name = name
        self._busy = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap
        self._arrivals = itertools.count()
        self._waiting = 0
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=name)

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> int:
        return self._busy

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float, priority: int = 0) -> AsyncIterator[Slot]:
        """Wait for a slot until `deadline` (time.monotonic()); refuse at once if the queue is full."""
        if self._busy < self.slots:  # then nobody is waiting: a freed slot goes to a waiter first
            self._busy += 1
        else:
            if self._waiting >= self.max_queue:
                raise ResourceExhausted(
                    f"{self.name} is busy: {self.slots} running and {self._waiting} queued (the limit); retry later"
                )
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._arrivals), granted))
            self._waiting += 1
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await granted
            except BaseException as exc:
                if granted.done() and not granted.cancelled():
                    self._hand_on()  # the slot came just as this caller gave up: pass it on
                if isinstance(exc, TimeoutError):
                    raise DeadlineExceeded(f"{self.name}: deadline passed while queued for a slot") from None
                raise
            finally:
                self._waiting -= 1
        slot = Slot(self)
        try:
            yield slot
        finally:
            slot.release()

    def _hand_on(self) -> None:
        """A slot is free: give it to the first live waiter, else mark it free."""
        while self._waiters:
            _, _, granted = heapq.heappop(self._waiters)
            if not granted.done():
                granted.set_result(None)
                return
        self._busy -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Slot:
    def __init__(self, pool: SlotPool) -> None:
        self._pool = pool
        self._pending: asyncio.Future[Any] | None = None
        self._released = False

    async def run(self, fn: Callable[[], T], deadline: float) -> T:
        """Run blocking `fn` in this slot's worker thread; DEADLINE_EXCEEDED if it outlives `deadline`."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool._executor, fn)  # noqa: SLF001 (a slot is part of its pool)
        self._pending = future
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await asyncio.shield(future)
        except TimeoutError:
            raise DeadlineExceeded(f"{self._pool.name}: the request ran past its deadline") from None

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._pending is not None and not self._pending.done():
            # The thread is still working: the slot frees when it is done, not before.
            self._pending.add_done_callback(lambda _: self._pool._hand_on())  # noqa: SLF001 (as above)
        else:
            self._pool._hand_on()  # noqa: SLF001 (as above)
