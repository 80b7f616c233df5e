"""A bounded number of work slots with a bounded queue in front: the model services' admission.

Waiters are served earliest key first: a TTS keys each request by when its listener needs the
audio (earliest deadline first), Voxtral by the kind of work. Blocking model work runs in a worker
thread that owns its slot: when the caller gives up (deadline, cancellation) the work is told to
stop, and the slot is released only once that thread has really finished, so a service never runs
more work at once than it has slots.
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

from opentelemetry import trace

from services.common import tracing
from services.common.errors import DeadlineExceeded, ResourceExhausted
from services.common.load import LoadMeter, StageLoad

T = TypeVar("T")


class SlotPool:
    """Slots are handed out by key (lower first), then in arrival order."""

    def __init__(self, slots: int, max_queue: int, name: str, window_s: float = 10.0) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.name = name
        self._busy = 0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []  # a heap
        self._arrivals = itertools.count()
        self._waiting = 0
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=name)
        self.meter = LoadMeter(name, slots, window_s)

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> int:
        return self._busy

    def load(self) -> StageLoad:
        return self.meter.snapshot()

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float, priority: float = 0.0, continuing: bool = False,
                   need_by: float | None = None) -> AsyncIterator[Slot]:
        """Wait for a slot until `deadline` (time.monotonic()); refuse at once if the queue is full,
        unless the work is `continuing` (a later piece of a request already served: never refused
        halfway). A waiter that is cancelled (its caller went) or whose deadline passes never starts.
        `need_by` (time.monotonic()): when the work is needed, for the lateness the pool reports;
        unset, it is needed at once."""
        queued_at = time.monotonic()
        if self._busy < self.slots:  # then nobody is waiting: a freed slot goes to a waiter first
            self._set_busy(self._busy + 1)
        else:
            if self._waiting >= self.max_queue and not continuing:
                self.meter.dropped("queue_full")
                raise ResourceExhausted(
                    f"{self.name} is busy: {self.slots} running and {self._waiting} queued (the limit); retry later"
                )
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._arrivals), granted))
            self._waiting += 1
            self.meter.queued_changed(self._waiting)
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await granted
            except BaseException as exc:
                if granted.done() and not granted.cancelled():
                    self._hand_on()  # the slot came just as this caller gave up: pass it on
                if isinstance(exc, TimeoutError):
                    self.meter.dropped("expired")
                    raise DeadlineExceeded(f"{self.name}: deadline passed while queued for a slot") from None
                self.meter.dropped("caller_gone")
                raise
            finally:
                self._waiting -= 1
                self.meter.queued_changed(self._waiting)
        slot = Slot(self, time.monotonic() - queued_at)
        tracing.record(f"{self.name}.queue", trace.get_current_span(), queued_at, time.monotonic(),
                       queued_ms=round(slot.queued_s * 1000, 2))
        self.meter.granted(slot.queued_s, time.monotonic() - (queued_at if need_by is None else need_by))
        try:
            yield slot
        finally:
            slot.release()

    def _set_busy(self, busy: int) -> None:
        self._busy = busy
        self.meter.busy_changed(busy)

    def _hand_on(self) -> None:
        """A slot is free: give it to the first live waiter, else mark it free."""
        while self._waiters:
            _, _, granted = heapq.heappop(self._waiters)
            if not granted.done():
                granted.set_result(None)
                return
        self._set_busy(self._busy - 1)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Slot:
    def __init__(self, pool: SlotPool, queued_s: float) -> None:
        self._pool = pool
        self._pending: asyncio.Future[Any] | None = None
        self._stop: Callable[[], None] | None = None
        self._released = False
        self._held_from = time.monotonic()
        self.queued_s = queued_s  # how long the caller waited for this slot

    async def run(self, fn: Callable[[], T], deadline: float, stop: Callable[[], None] | None = None,
                  what: str = "compute") -> T:
        """Run blocking `fn` in this slot's worker thread; DEADLINE_EXCEEDED if it outlives `deadline`.
        `stop` asks the running `fn` to end early (thread-safe); it is called when the caller gives up.
        `what` names its span (`<pool>.<what>`)."""
        loop = asyncio.get_running_loop()
        with tracing.span(f"{self._pool.name}.{what}"):
            future = loop.run_in_executor(self._pool._executor, fn)  # noqa: SLF001 (a slot is part of its pool)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # work a caller left is read by nobody
            self._pending, self._stop = future, stop
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    return await asyncio.shield(future)
            except TimeoutError:
                self._abandon()
                raise DeadlineExceeded(f"{self._pool.name}: the request ran past its deadline") from None

    def _abandon(self) -> None:
        if self._pending is not None and not self._pending.done() and self._stop is not None:
            self._stop()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        pool = self._pool
        if self._pending is not None and not self._pending.done():
            # The thread is still working: told to stop, the slot frees when it is done, not before.
            self._abandon()
            abandoned = time.monotonic()

            def freed(_: object) -> None:
                pool.meter.held(time.monotonic() - self._held_from, time.monotonic() - abandoned)
                pool._hand_on()  # noqa: SLF001 (as above)

            self._pending.add_done_callback(freed)
        else:
            pool.meter.held(time.monotonic() - self._held_from, None)
            pool._hand_on()  # noqa: SLF001 (as above)
