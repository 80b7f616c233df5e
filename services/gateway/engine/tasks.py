"""Tasks an owner starts and must not leave behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from services.common.errors import ServiceError

T = TypeVar("T")
log = logging.getLogger(__name__)


def _ended(task: asyncio.Task[Any]) -> None:
    """Every ending is looked at: a failure is logged here rather than lost (or printed at exit)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, ServiceError):  # a ServiceError is the session's to report
        log.error("session task failed", exc_info=exc)


class TaskSet:
    """Each task is forgotten once done; all of them can be awaited, or cancelled, together."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_ended)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every task, including those started meanwhile, is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every task and wait until each has finished (a task may start another as it ends)."""
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
