"""A session's traces: the session's own span, and one trace per turn (from the start of the
user's speech, or a typed turn, to the turn's end), linked to the session's."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from services.common import tracing


class SessionTrace:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.span: trace.Span = trace.INVALID_SPAN

    def open(self, resumed: bool) -> None:
        self.span = tracing.start_root("session", session_id=self.session_id, resumed=resumed)

    def turn(self, turn_id: str, **attributes: Any) -> trace.Span:
        """A new turn's span: the root of its own trace."""
        return tracing.start_root("turn", self.span, session_id=self.session_id, turn_id=turn_id, **attributes)

    def close(self, *unfinished: trace.Span) -> None:
        """The session ends: turns still open end with it."""
        for span in unfinished:
            tracing.end(span, outcome="session_closed")
        tracing.end(self.span)
