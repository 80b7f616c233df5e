"""A test client for GatewayService.Converse that can react to what it hears, and (with `listen`)
plays each reply at real time as a speaker would, reporting its playback position."""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import Any

import grpc
import numpy as np

from clients.listener import Listener
from services.common.limits import END_OF_TURN_FALLBACK_MS
from voice.v1 import gateway_pb2, gateway_pb2_grpc

# Silence after speech that ends any turn whatever the end-of-turn model says (the VAD's fallback, and margin).
ENDS_TURN_MS = END_OF_TURN_FALLBACK_MS + 400


REPORT_EVERY_S = 0.2


class Conversation:
    def __init__(self, stub: gateway_pb2_grpc.GatewayServiceStub, config: gateway_pb2.SessionConfig,
                 timeout: float = 120, listen: bool = False,
                 metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.listener = Listener() if listen else None
        self.config = config
        self.rate = config.input_sample_rate_hz
        self._requests: asyncio.Queue[gateway_pb2.ConverseRequest | None] = asyncio.Queue()
        self._requests.put_nowait(gateway_pb2.ConverseRequest(config=config))
        self.events: list[tuple[str, Any]] = []
        self.event_times: list[float] = []  # when each event arrived (monotonic)
        self._changed = asyncio.Condition()
        self.call = stub.Converse(self._stream(), timeout=timeout, metadata=metadata)
        self.error: grpc.aio.AioRpcError | None = None
        self.samples_sent = 0
        self._next_send = 0.0
        self.sent_at: list[tuple[int, float]] = []  # (samples sent so far, when), per audio message
        self._reader = asyncio.ensure_future(self._read())
        self._reporter = asyncio.ensure_future(self._report()) if listen else None

    async def _stream(self):
        while (request := await self._requests.get()) is not None:
            yield request
            if request.audio:
                self.samples_sent += len(request.audio) // 2
                self.sent_at.append((self.samples_sent, time.monotonic()))

    def when_sent(self, sample: int) -> float | None:
        """When the message holding input sample `sample` went out."""
        i = bisect.bisect_right([n for n, _ in self.sent_at], sample)
        return self.sent_at[i][1] if i < len(self.sent_at) else None

    async def _read(self) -> None:
        try:
            async for message in self.call:
                kind = message.WhichOneof("payload")
                self._play(kind, getattr(message, kind))
                async with self._changed:
                    self.events.append((kind, getattr(message, kind)))
                    self.event_times.append(time.monotonic())
                    self._changed.notify_all()
        except grpc.aio.AioRpcError as err:
            self.error = err
        async with self._changed:
            self.events.append(("closed", None))
            self.event_times.append(time.monotonic())
            self._changed.notify_all()

    def _play(self, kind: str, event: Any) -> None:
        if self.listener is None:
            return
        if kind == "response_audio":
            self.listener.audio(event.turn_id, event.audio, event.sample_rate_hz, event.offset_ms, event.text)
        elif kind in ("reply_paused", "interrupted"):
            stopped = self.listener.stop()  # a player stops at once and drops its queue
            if stopped is not None and stopped[0] == event.turn_id:
                self._requests.put_nowait(gateway_pb2.ConverseRequest(playback=gateway_pb2.PlaybackReport(
                    turn_id=stopped[0], played_ms=stopped[1])))

    async def _report(self) -> None:
        """Where playback is, every REPORT_EVERY_S while a reply plays."""
        assert self.listener is not None
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            if self.listener.playing() and (position := self.listener.position()) is not None:
                self._requests.put_nowait(gateway_pb2.ConverseRequest(playback=gateway_pb2.PlaybackReport(
                    turn_id=position[0], played_ms=position[1])))

    async def send(self, samples: np.ndarray, chunk_ms: int = 20, pace: float = 0.0) -> None:
        """Audio in chunks; pace 1.0 is real time on one clock across calls (no drift, no catching up
        faster than real time), 0 as fast as the stream takes it."""
        step = self.rate * chunk_ms // 1000
        for i in range(0, len(samples), step):
            if pace:
                now = time.monotonic()
                self._next_send = max(self._next_send, now)  # idle time is not made up for
                await asyncio.sleep(max(0.0, self._next_send - now))
                self._next_send += chunk_ms / 1000 * pace
            await self._requests.put(gateway_pb2.ConverseRequest(audio=samples[i:i + step].tobytes()))

    async def silence(self, ms: int, pace: float = 0.0) -> None:
        await self.send(np.zeros(self.rate * ms // 1000, dtype=np.int16), pace=pace)

    async def control(self, action: gateway_pb2.ControlAction.ValueType) -> None:
        await self._requests.put(gateway_pb2.ConverseRequest(control=action))

    async def raw(self, request: gateway_pb2.ConverseRequest) -> None:
        await self._requests.put(request)

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 60) -> Any:
        """The count-th event of this kind (waiting for it)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.of(kind)) >= count or self.closed)
        found = self.of(kind)
        assert len(found) >= count, f"no {kind} #{count}; got {[k for k, _ in self.events]} error={self.error}"
        return found[count - 1]

    def of(self, kind: str) -> list[Any]:
        return [event for k, event in self.events if k == kind]

    @property
    def closed(self) -> bool:
        return any(k == "closed" for k, _ in self.events)

    async def finish(self, timeout: float = 60) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        await self.control(gateway_pb2.CONTROL_ACTION_END_OF_INPUT)
        await self._requests.put(None)
        await asyncio.wait_for(self._reader, timeout)

    def cancel(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        self.call.cancel()
