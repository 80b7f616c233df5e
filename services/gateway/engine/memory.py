"""What a session remembers: the last exchanges (in memory, and in Redis for a resume) and the
metrics record of each completed turn."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from services.common import tracing
from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable, echo
from services.common.store import Claim, Exchange
from services.common.tools import ToolCall
from services.gateway.config import GatewaySettings
from services.gateway.engine.stages import HistoryTurn
from services.gateway.engine.store import Store
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)
# Ends a reply in the context when the listener did not hear all of it.
CUT_OFF_MARK = " —"
# Stands for the user's words in the context when they could not be transcribed.
UNKNOWN_WORDS = "[words not transcribed]"


class Memory:
    def __init__(self, settings: GatewaySettings, store: Store, session_id: str, owner: str,
                 metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.session_id = session_id
        self.owner = owner  # the identity that may resume it
        self.holder = secrets.token_hex(8)  # this connection, as the session's lease names it
        self.context: list[Exchange] = []
        # One context write at a time: a revision sent beside an append could reach Redis first.
        self._writing = asyncio.Lock()

    async def open(self, resume: bool) -> None:
        """Claim the session for this connection (its lease in the store); a resumed one gets its
        context back. A new session goes on without the store when it is down; a resume cannot."""
        sid = echo(self.session_id)
        match await self.store.claim(self.session_id, self.holder, self.owner, resume=resume):
            case Claim.UNREACHABLE if resume:
                raise Unavailable(f"session {sid} cannot be checked now (the conversation store is unreachable): "
                                  "retry shortly, or leave session_id empty to start anew")
            case Claim.UNKNOWN:
                raise InvalidArgument(f"session {sid} is unknown or has expired: leave session_id empty to start "
                                      "a new one")
            case Claim.FORBIDDEN:
                raise PermissionDenied(f"session {sid} was started with another API key: only its creator can "
                                       "resume it")
            case Claim.HELD:
                raise FailedPrecondition(
                    f"session {sid} is live on another connection: end that one first (a connection that dropped "
                    f"frees it within {self.settings.redis.lease_ttl_s:g} s of the gateway noticing)")
        if resume:
            self.context = await self.store.context(self.session_id)

    async def hold(self) -> None:
        """Renew the lease while the session lives (a task; cancelled when it ends)."""
        period = self.settings.redis.lease_ttl_s / 3
        while True:
            await asyncio.sleep(period)
            renewed = await self.store.renew(self.session_id, self.holder, self.owner)
            if renewed is False:
                log.warning("session lease taken by another connection", extra={"session_id": self.session_id})

    async def release(self) -> None:
        """Give the lease back; also one taken by a renewal after a store outage (only ours is deleted)."""
        await self.store.release(self.session_id, self.holder)

    def history(self) -> list[HistoryTurn]:
        """The context as the prior turns Voxtral is given: each exchange's user turn, its tool calls
        and results, and what the listener heard."""
        return [turn for ex in self.context for turn in (
            HistoryTurn("user", UNKNOWN_WORDS if ex.user_unknown else ex.user), *map(tool_turn, ex.tools),
            HistoryTurn("assistant", ex.assistant + CUT_OFF_MARK * ex.cut_off))]

    async def reset(self) -> None:
        async with self._writing:
            self.context = []
            await self.store.reset_context(self.session_id)

    async def remember(self, turn_id: str, user: str | None, spoken: str, cut_off: bool = False,
                       tools: Sequence[HistoryTurn] = ()) -> None:
        """Keep the exchange: the user's words (None: not known), the reply's tool calls and results,
        and what the listener heard of the reply."""
        exchange = Exchange(user=user or "", assistant=spoken, turn_id=turn_id, at=time.time(), cut_off=cut_off,
                            user_unknown=user is None, tools=[tool_record(t) for t in tools])
        async with self._writing:
            self.context = [*self.context, exchange][-self.settings.redis.context_exchanges:]
            with tracing.span("redis.append_exchange"):
                await self.store.append_exchange(self.session_id, exchange)

    async def revise(self, turn_id: str, spoken: str, cut_off: bool) -> None:
        """What the listener heard of a kept reply, known late (a playback report after its stop)."""
        async with self._writing:
            kept = [replace(e, assistant=spoken, cut_off=cut_off) if e.turn_id == turn_id else e
                    for e in self.context]
            if kept != self.context:
                self.context = kept
                with tracing.span("redis.replace_context"):
                    await self.store.replace_context(self.session_id, kept)

    async def record(self, turn_id: str, metrics: Mapping[str, float],
                     details: Mapping[str, object] | None = None) -> None:
        """A turn's latency record, with what else is known of it: Redis and Prometheus."""
        with tracing.span("redis.record_turn"):
            await self.store.record_turn(self.session_id, turn_id, metrics, details)
        self.metrics.observe_turn(metrics)


def tool_record(turn: HistoryTurn) -> dict[str, Any]:
    """A call or result as the store keeps it (Exchange.tools)."""
    if turn.role == "tool":
        return {"role": "tool", "id": turn.tool_call_id, "text": turn.text}
    return {"role": "assistant", "calls": [{"id": c.call_id, "name": c.name, "arguments": c.arguments}
                                           for c in turn.tool_calls]}


def tool_turn(record: dict[str, Any]) -> HistoryTurn:
    if record.get("role") == "tool":
        return HistoryTurn("tool", str(record.get("text", "")), tool_call_id=str(record.get("id", "")))
    return HistoryTurn("assistant", "", tuple(ToolCall(str(c["id"]), str(c["name"]), dict(c["arguments"]))
                                              for c in record.get("calls", [])))
