"""How loaded a model service is, measured where its work is admitted: slot use over a recent window
and how late work got its slot (past when it was needed). The gateway admits sessions on these figures, the HPA scales
on them (Prometheus), GetLoad reports them."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

WAIT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
UTILISATION = Gauge("voice_stage_slot_utilisation", "Share of the stage's slots busy over the load window (0-1)",
                    ["stage"])
QUEUED = Gauge("voice_stage_queued", "Requests waiting for a slot", ["stage"])
QUEUE_WAIT = Histogram("voice_stage_queue_wait_seconds", "Time a request waited for a slot", ["stage"],
                       buckets=WAIT_BUCKETS_S)
SLOT_HOLD = Histogram("voice_stage_slot_hold_seconds", "Time one piece of work held a slot", ["stage"],
                      buckets=WAIT_BUCKETS_S)
HOLD_AFTER_CANCEL = Histogram("voice_stage_hold_after_cancel_seconds",
                              "Time a slot stayed busy after its caller gave up", ["stage"], buckets=WAIT_BUCKETS_S)
DROPPED = Counter("voice_stage_dropped_total", "Requests that never got a slot, by reason "
                  "(queue_full, expired, caller_gone)", ["stage", "reason"])


@dataclass(frozen=True)
class StageLoad:
    slots: int
    busy: int
    queued: int
    utilisation: float  # busy slot-time / slot-time over the window, 0-1
    late_p95_ms: float  # how long past its need time work got its slot (p95 over the window; 0 when none)
    window_s: float


class LoadMeter:
    """Slot use as an exponentially weighted average with time constant `window_s`, and the queue
    waits of the last `window_s` seconds."""

    def __init__(self, stage: str, slots: int, window_s: float) -> None:
        self.stage = stage
        self.slots = slots
        self.window_s = window_s
        self._busy = 0
        self._queued = 0
        self._average = 0.0
        self._since = time.monotonic()
        self._late: deque[tuple[float, float]] = deque(maxlen=4096)  # (granted at, s past its need time)
        UTILISATION.labels(stage).set_function(self.utilisation)
        QUEUED.labels(stage).set_function(lambda: self._queued)

    def _average_at(self, now: float) -> float:
        decay = math.exp(-(now - self._since) / self.window_s)
        return self._average * decay + self._busy / self.slots * (1 - decay)

    def busy_changed(self, busy: int) -> None:
        now = time.monotonic()
        self._average, self._since, self._busy = self._average_at(now), now, busy

    def queued_changed(self, queued: int) -> None:
        self._queued = queued

    def utilisation(self) -> float:
        return self._average_at(time.monotonic())

    def granted(self, waited_s: float, late_s: float) -> None:
        self._late.append((time.monotonic(), max(0.0, late_s)))
        QUEUE_WAIT.labels(self.stage).observe(waited_s)

    def held(self, seconds: float, after_cancel_s: float | None) -> None:
        SLOT_HOLD.labels(self.stage).observe(seconds)
        if after_cancel_s is not None:
            HOLD_AFTER_CANCEL.labels(self.stage).observe(after_cancel_s)

    def dropped(self, reason: str) -> None:
        DROPPED.labels(self.stage, reason).inc()

    def snapshot(self) -> StageLoad:
        now = time.monotonic()
        recent = sorted(late for at, late in self._late if now - at <= self.window_s)
        p95 = recent[min(len(recent) - 1, int(0.95 * len(recent)))] * 1000 if recent else 0.0
        return StageLoad(self.slots, self._busy, self._queued, round(self._average_at(now), 4), round(p95, 1),
                         self.window_s)

