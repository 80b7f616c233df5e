"""A reply's calls of client tools: the results it waits for, and what the calls and results were
(kept with the exchange, so a resumed session still knows)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.common.errors import Status
from services.common.tools import ToolCall
from services.gateway.engine.stages import HistoryTurn


class ToolError(Exception):
    """The reply cannot go on past its tool call: no result in time, or a call the model got wrong."""

    def __init__(self, code: Status, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class PendingCalls:
    """The calls a reply waits on, each answered once by the client's result."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self.turns: list[HistoryTurn] = []  # every call and result so far, in order

    def expect(self, calls: Sequence[ToolCall]) -> None:
        loop = asyncio.get_running_loop()
        self._waiting = {c.call_id: loop.create_future() for c in calls}
        self.turns.append(HistoryTurn("assistant", "", tuple(calls)))

    def waiting_names(self) -> str:
        names = [c.name for t in self.turns for c in t.tool_calls if self.waiting_for(c.call_id)]
        return ", ".join(names)

    def knows(self, call_id: str) -> bool:
        return any(c.call_id == call_id for t in self.turns for c in t.tool_calls)

    def waiting_for(self, call_id: str) -> bool:
        future = self._waiting.get(call_id)
        return future is not None and not future.done()

    def answer(self, call_id: str, output: str) -> bool:
        """The client's result; False when no call of this reply waits for it."""
        if not self.waiting_for(call_id):
            return False
        self._waiting[call_id].set_result(output)
        return True

    def abandon(self, why: str) -> None:
        """No result can come any more (the client's input has ended): the wait ends now."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ToolError(Status.FAILED_PRECONDITION, why))

    async def results(self, calls: Sequence[ToolCall], timeout_s: float) -> None:
        """Every call's result, kept as a tool turn in call order; ToolError when they do not all come in time."""
        try:
            async with asyncio.timeout(timeout_s):
                outputs = [await self._waiting[c.call_id] for c in calls]
        except TimeoutError:
            missing = [c.name for c in calls if self._waiting[c.call_id].cancelled()]
            raise ToolError(Status.DEADLINE_EXCEEDED, f"tool {', '.join(missing)} gave no result within "
                            f"{timeout_s:g} s") from None
        self.turns += [HistoryTurn("tool", output, tool_call_id=c.call_id)
                       for c, output in zip(calls, outputs, strict=True)]
