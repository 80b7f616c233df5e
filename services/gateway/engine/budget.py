"""Audio held in memory, bounded in bytes: per session and per process; and audio a session may
send, bounded in speed. A client that sends audio faster than the VAD takes it, or faster than the
speed limit, waits (its stream is not read meanwhile, so transport flow control
slows it) instead of growing the gateway; one holder alone always fits, so a message larger than
a budget is never stuck."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)
# At most one "throttled" log line per session this often; the counter counts every wait.
LOG_EVERY_S = 10.0


class ByteBudget:
    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self.name = name
        self.held = 0
        self._freed = asyncio.Event()

    def fits(self, size: int) -> bool:
        return self.held == 0 or self.held + size <= self.limit

    async def take(self, size: int) -> bool:
        """Hold `size` bytes, waiting for room; True when it had to wait."""
        waited = False
        while not self.fits(size):
            waited = True
            self._freed.clear()
            await self._freed.wait()
        self.held += size
        return waited

    def give(self, size: int) -> None:
        self.held -= size
        self._freed.set()


class AudioBudget:
    """One session's audio waiting for the VAD: within its own budget and the process's."""

    def __init__(self, session: ByteBudget, process: ByteBudget, session_id: str, metrics: GatewayMetrics) -> None:
        self.session = session
        self.metrics = metrics
        self.process = process
        self.session_id = session_id
        self._logged_at = -LOG_EVERY_S

    async def take(self, size: int) -> None:
        if not (self.session.fits(size) and self.process.fits(size)):
            self._throttled("budget")
        await self.session.take(size)
        try:
            await self.process.take(size)
        except BaseException:
            self.session.give(size)
            raise

    def _throttled(self, reason: str) -> None:
        self.metrics.audio_throttled.labels(reason=reason).inc()
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            what = "faster than the VAD takes it" if reason == "budget" else "faster than the audio speed limit"
            log.warning(f"audio arrives {what}: the client is slowed down",
                        extra={"session_id": self.session_id, "held_bytes": self.session.held,
                               "process_held_bytes": self.process.held})

    def give(self, size: int) -> None:
        self.session.give(size)
        self.process.give(size)


class AudioSpeedLimit:
    """Audio a session may send, in samples: a burst (a recording sent at once), then at most
    `speed` times real time; more waits. Bounds the VAD work one client can ask for."""

    def __init__(self, rate_hz: int, speed: float, burst_s: float, budget: AudioBudget,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.refill = rate_hz * speed  # samples per second
        self.capacity = rate_hz * burst_s
        self.tokens = self.capacity
        self.budget = budget
        self.clock = clock
        self._at = clock()

    def _update(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.refill)
        self._at = now

    async def take(self, samples: int) -> None:
        self._update()
        if self.tokens < samples:
            self.budget._throttled("speed")  # noqa: SLF001 (one log line and counter for both limits)
            await asyncio.sleep((samples - self.tokens) / self.refill)
            self._update()
        self.tokens -= samples
