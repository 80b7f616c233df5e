"""A session's way to its client: one event at a time (the turn, the VAD reader and the input loop
all emit), and a client that reads nothing for the write timeout is stalled: its session ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from services.gateway.engine.ends import Stalled
from services.gateway.engine.events import Event
from services.gateway.metrics import GatewayMetrics


class Emitter:
    def __init__(self, send: Callable[[Event], Awaitable[None]], write_timeout_s: float,
                 metrics: GatewayMetrics) -> None:
        self.send = send
        self.metrics = metrics
        self.write_timeout_s = write_timeout_s
        self.stalled = asyncio.Event()  # set once a write timed out
        self._lock = asyncio.Lock()

    async def __call__(self, event: Event) -> None:
        async with self._lock:
            if self.stalled.is_set():
                raise Stalled("the client stopped reading")
            try:
                async with asyncio.timeout(self.write_timeout_s):
                    await self.send(event)
            except TimeoutError:
                self.metrics.stalled_closed.inc()
                self.stalled.set()
                raise Stalled("the client stopped reading") from None
