"""Audio held in memory, bounded in bytes: per session and per process. A client that sends audio
faster than the VAD takes it waits (its stream is not read meanwhile, so transport flow control
slows it) instead of growing the gateway; one holder alone always fits, so a message larger than
a budget is never stuck."""

from __future__ import annotations

import asyncio
import logging
import time

from services.gateway.metrics import AUDIO_THROTTLED

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

    def __init__(self, session: ByteBudget, process: ByteBudget, session_id: str) -> None:
        self.session = session
        self.process = process
        self.session_id = session_id
        self._logged_at = -LOG_EVERY_S

    async def take(self, size: int) -> None:
        if not (self.session.fits(size) and self.process.fits(size)):
            self._throttled()
        await self.session.take(size)
        try:
            await self.process.take(size)
        except BaseException:
            self.session.give(size)
            raise

    def _throttled(self) -> None:
        AUDIO_THROTTLED.inc()
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning("audio arrives faster than the VAD takes it: the client is slowed down",
                        extra={"session_id": self.session_id, "held_bytes": self.session.held,
                               "process_held_bytes": self.process.held})

    def give(self, size: int) -> None:
        self.session.give(size)
        self.process.give(size)
