"""What a Realtime connection's reader hands its engine session, in order and bounded: audio in
bytes, every input in count. A reader that finds no room waits, so the socket is not read and TCP
slows the client down: the engine's byte budget and audio speed limit reach the socket."""

from __future__ import annotations

import asyncio
import select
from collections import deque
from typing import Any

from services.gateway.engine.inputs import Audio, Input

# Audio held between the reader and the engine session (PCM bytes); one item alone always fits.
AUDIO_BYTES = 256 * 1024
# Inputs of any kind held there (a flood of tiny events is bounded too).
ITEMS = 64
# While the reader waits for room, how often it looks whether its client has gone.
GONE_POLL_S = 0.2


class Inbox:
    def __init__(self, audio_bytes: int = AUDIO_BYTES, items: int = ITEMS) -> None:
        self.audio_bytes = audio_bytes
        self.items = items
        self._queue: deque[Input] = deque()
        self._held = 0
        self._ended = False
        self._room = asyncio.Event()  # set when an item was taken (or the inbox ended)
        self._ready = asyncio.Event()  # set when an item was queued (or the inbox ended)

    @staticmethod
    def _size(item: Input) -> int:
        return len(item.pcm) if isinstance(item, Audio) else 0

    def has_room(self, item: Input) -> bool:
        return self._ended or not self._queue or (
            len(self._queue) < self.items and self._held + self._size(item) <= self.audio_bytes)

    async def put(self, item: Input) -> None:
        """Queue `item` once there is room (an ended inbox drops it)."""
        while not self.has_room(item):
            self._room.clear()
            await self._room.wait()
        self.put_now(item)

    def put_now(self, item: Input) -> None:
        """Queue an item of the server's own (a restart's interrupt, the session request): no wait."""
        if self._ended:
            return
        self._queue.append(item)
        self._held += self._size(item)
        self._ready.set()

    def end(self) -> None:
        """No more inputs: what is queued is still read, then the engine session's input ends."""
        self._ended = True
        self._ready.set()
        self._room.set()

    async def get(self) -> Input | None:
        """The next input; None once the inbox has ended and is empty."""
        while not self._queue and not self._ended:
            self._ready.clear()
            await self._ready.wait()
        if not self._queue:
            return None
        item = self._queue.popleft()
        self._held -= self._size(item)
        self._room.set()
        return item


def peer_closed(transport: Any) -> bool:
    """Whether the client has closed or reset its connection, seen without reading what it sent
    before (which the server is not reading while it waits for room)."""
    if transport is None or transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLRDHUP | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))
