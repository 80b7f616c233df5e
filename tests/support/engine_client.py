"""A client of the conversation engine as an adapter is one: typed inputs in, typed events out,
with the fake stages behind it. For unit tests that run in milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import numpy as np
import pytest

from harness.local_redis import RedisProcess
from services.common.settings import RedisSettings
from services.common.store import SessionStore
from services.gateway.config import GatewaySettings
from services.gateway.engine.caller import OPEN, Caller
from services.gateway.engine.conversations import ConversationEngine
from services.gateway.engine.events import Event, ResponseAudio, SessionStarted, SpeechStarted
from services.gateway.engine.inputs import Audio, ControlInput, Input, PlaybackReport, SessionRequest
from services.gateway.engine.vocabulary import Control, VadEventKind
from tests.support.fake_stages import FakeStages
from tests.support.memory_store import MemoryStore

RATE = 16000
LOCAL = Caller(OPEN, "127.0.0.1")
E = TypeVar("E")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisProcess]:
    """One real redis-server for a module of engine tests."""
    server = RedisProcess()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stages() -> FakeStages:
    return FakeStages()


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def engine(stages: FakeStages, redis: RedisProcess | None = None, store: dict[str, object] | None = None,
           **settings: object) -> ConversationEngine:
    """The engine on the fake stages, its store in memory (or, given a server, the Redis store)."""
    url = {"url": redis.url} if redis is not None else {}
    config = GatewaySettings(auth_disabled=True, redis=RedisSettings(**url, **(store or {})), **settings)  # type: ignore[arg-type]  # test overrides
    backend = SessionStore(config.redis) if redis is not None else MemoryStore(config.redis)
    return ConversationEngine(config, stages, backend)


class Client:
    def __init__(self, engine: ConversationEngine, request: SessionRequest | None = None,
                 caller: Caller = LOCAL) -> None:
        self.engine = engine
        self.events: list[Event] = []
        self.sent = 0  # input samples sent
        self._inputs: asyncio.Queue[Input | None] = asyncio.Queue()
        self._inputs.put_nowait(request or SessionRequest(RATE))
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(engine.converse(self._read(), self._send, caller))

    async def _read(self) -> AsyncIterator[Input]:
        while (item := await self._inputs.get()) is not None:
            yield item

    async def _send(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def send(self, item: Input) -> None:
        self._inputs.put_nowait(item)

    def audio(self, ms: int, amplitude: int = 100) -> int:
        """Send `ms` of audio (a constant level: 100 is about -50 dBFS, 0 digital silence); returns
        how many samples that was."""
        samples = RATE * ms // 1000
        self.send(Audio(np.full(samples, amplitude, dtype=np.int16).tobytes()))
        self.sent += samples
        return samples

    def control(self, action: Control) -> None:
        self.send(ControlInput(action))

    def played(self, turn_id: str, ms: float) -> None:
        """Report that `ms` of reply `turn_id` have been played."""
        self.send(PlaybackReport(turn_id, ms))

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type[E], count: int = 1, timeout: float = 5.0) -> E:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.of(kind)) >= count or self.task.done())
        found = self.of(kind)
        assert len(found) >= count, f"no {kind.__name__} #{count}: got {[type(e).__name__ for e in self.events]}"
        return found[count - 1]

    async def end(self, timeout: float = 5.0) -> None:
        """End of input, then the end of the stream; waits for the session to finish."""
        self.control(Control.END_OF_INPUT)
        self._inputs.put_nowait(None)
        async with asyncio.timeout(timeout):
            await self.task


async def utter(client: Client, stages: FakeStages, ms: int = 1200, ends: bool = True) -> tuple[int, int]:
    """The user says something: audio goes in and the (fake) VAD hears speech in all of it (and
    the end of the turn after it, when `ends`). Returns the utterance's first and last sample."""
    await client.wait_for(SessionStarted)
    async with asyncio.timeout(5):
        while not stages.streams:  # the VAD stream opens once the client has session_started
            await asyncio.sleep(0)
    stream = stages.vad
    start = stream.received
    samples = client.audio(ms)
    await stream.heard(start + samples)
    stream.event(VadEventKind.STARTED, start, start)
    if ends:
        stream.event(VadEventKind.ENDED, start, start + samples)
    return start, start + samples


async def reply_playing(client: Client, stages: FakeStages, words: int = 3) -> tuple[str, asyncio.Event]:
    """A first turn whose reply has sent `words` words and holds there until the event is set."""
    gate = asyncio.Event()
    stages.tts.stall, stages.tts.stall_after = gate, words
    await utter(client, stages)
    await until(lambda: len(client.of(ResponseAudio)) == words)
    return client.of(SpeechStarted)[0].turn_id, gate


def speech(client: Client, stages: FakeStages, ms: int) -> tuple[int, int]:
    """Audio the VAD will hear as speech (events scripted by the test)."""
    start = stages.vad.received
    return start, start + client.audio(ms)


async def talks(client: Client, stages: FakeStages, ms: int) -> tuple[int, int]:
    """`ms` of speech, heard by the VAD, which says speech started."""
    start, end = speech(client, stages, ms)
    await stages.vad.heard(end)
    stages.vad.event(VadEventKind.STARTED, start, start)
    return start, end
