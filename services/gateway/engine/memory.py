"""What a session remembers: the last exchanges (in memory, and in Redis for a resume) and the
metrics record of each completed turn."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from services.common.errors import InvalidArgument, Unavailable, echo
from services.common.store import Exchange, SessionStore
from services.gateway.config import GatewaySettings
from services.gateway.engine.stages import HistoryTurn
from services.gateway.metrics import observe_turn

log = logging.getLogger(__name__)
# Ends a reply in the context when the listener did not hear all of it.
CUT_OFF_MARK = " —"
# Stands for the user's words in the context when they could not be transcribed.
UNKNOWN_WORDS = "[words not transcribed]"


class Memory:
    def __init__(self, settings: GatewaySettings, store: SessionStore, session_id: str) -> None:
        self.settings = settings
        self.store = store
        self.session_id = session_id
        self.context: list[Exchange] = []

    async def open(self, resume: bool) -> None:
        """Record the session in the store; a resumed one gets its context back first."""
        if resume:
            known = await self.store.session_exists(self.session_id)
            if known is None:
                raise Unavailable(f"session {echo(self.session_id)} cannot be checked now (the conversation "
                                  "store is unreachable): retry shortly, or leave session_id empty to start anew")
            if not known:
                raise InvalidArgument(f"session {echo(self.session_id)} is unknown or has expired: "
                                      "leave session_id empty to start a new one")
            self.context = await self.store.context(self.session_id)
        await self.store.open_session(self.session_id)

    def history(self) -> list[HistoryTurn]:
        """The context as the prior turns Voxtral is given."""
        return [HistoryTurn(role, text) for ex in self.context
                for role, text in (("user", UNKNOWN_WORDS if ex.user_unknown else ex.user),
                                   ("assistant", ex.assistant + CUT_OFF_MARK * ex.cut_off))]

    async def reset(self) -> None:
        self.context = []
        await self.store.reset_context(self.session_id)

    async def remember(self, turn_id: str, user: str | None, spoken: str, cut_off: bool = False) -> None:
        """Keep the exchange: the user's words (None: not known) and what the listener heard of the reply."""
        exchange = Exchange(user=user or "", assistant=spoken, turn_id=turn_id, at=time.time(), cut_off=cut_off,
                            user_unknown=user is None)
        self.context = [*self.context, exchange][-self.settings.redis.context_exchanges:]
        await self.store.append_exchange(self.session_id, exchange)

    async def record(self, turn_id: str, metrics: Mapping[str, float],
                     details: Mapping[str, object] | None = None) -> None:
        """A turn's latency record, with what else is known of it: Redis, Prometheus and the log."""
        await self.store.record_turn(self.session_id, turn_id, metrics, details)
        observe_turn(metrics)
        log.info("turn recorded", extra={"turn_id": turn_id, **(details or {}), **metrics})
