"""A stream's utterance in its caller's trace: the caller names the trace once the utterance has
started; each end-of-turn decision is a span in it, and the utterance one span up to its end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.context import Context

from services.common import tracing
from services.vad.endpointer import EventKind, SpeechEvent


class UtteranceTrace:
    def __init__(self) -> None:
        self.context: Context | None = None  # the utterance's trace, once the caller named it
        self.since = 0.0  # when it did (monotonic)

    def follow(self, carrier: dict[str, str]) -> None:
        self.context, self.since = tracing.context_of(carrier), time.monotonic()

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[trace.Span]:
        """A span in the utterance's trace; a non-recording one when it has none."""
        if self.context is None:
            yield trace.INVALID_SPAN
            return
        with tracing.tracer.start_as_current_span(name, context=self.context) as current:
            yield current

    def saw(self, event: SpeechEvent) -> None:
        """An event goes out: the utterance's span ends with its end."""
        if event.kind is not EventKind.ENDED or self.context is None:
            return
        tracing.record("vad.utterance", self.context, self.since, time.monotonic(),
                       voiced_ms=round(event.voiced_ms, 1), end_reason=event.reason and event.reason.value,
                       end_of_turn_probability=event.probability)
        self.context = None
