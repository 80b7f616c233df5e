"""When a session was last active, for the idle timeout: a client's valid event, or audio adding up
to a real amount. Bytes alone are not activity: a frame of a few samples now and then keeps nothing open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from services.gateway.engine.ends import Idle
from services.gateway.engine.inputs import Audio, Input, SessionRequest, Unreadable
from services.gateway.metrics import GatewayMetrics

# Audio counts as activity once this much of it has come since the last activity (a microphone's
# silence is audio: a live client passes this within a second), or a quarter of the idle timeout
# where that is shorter.
ACTIVE_AUDIO_S = 1.0


class Activity:
    def __init__(self, timeout_s: float, metrics: GatewayMetrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.enough_audio_s = min(ACTIVE_AUDIO_S, timeout_s / 4)
        self.clock = clock
        self.at = clock()
        self.rate_hz = 0  # unknown until the session's config: audio before it counts as nothing
        self._audio_s = 0.0

    def deadline(self) -> float:
        """When the session is idle, on `clock`'s time, unless it is active before."""
        return self.at + self.timeout_s

    def saw(self, item: Input) -> None:
        if isinstance(item, Audio):
            if self.rate_hz:
                self._audio_s += len(item.pcm) / 2 / self.rate_hz
            if self._audio_s < self.enough_audio_s:
                return
        elif isinstance(item, Unreadable):
            return
        elif isinstance(item, SessionRequest) and self.rate_hz:
            return  # a second config is refused: nothing done
        self.at = self.clock()
        self._audio_s = 0.0


async def next_input(inputs: AsyncIterator[Input], activity: Activity) -> Input | None:
    """The client's next input (None: its stream ended); Idle once the session has been inactive
    for the idle timeout."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + activity.deadline() - time.monotonic()):
            item = await anext(aiter(inputs), None)
    except TimeoutError:
        activity.metrics.idle_closed.inc()
        raise Idle(f"nothing received for {activity.timeout_s:g} s: the session is closed "
                   "(a client keeps a session by sending audio, silence included)") from None
    if item is not None:
        activity.saw(item)
    return item
