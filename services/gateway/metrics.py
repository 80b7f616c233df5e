"""Prometheus metrics of the gateway, named after the design's latency metrics. One `GatewayMetrics`
is built by the composition root on the process's registry and handed to whatever counts; a test
builds its own on a fresh registry and reads it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from services.common.latency import METRICS

BUCKETS_MS = (5, 10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000)
PROBABILITY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class GatewayMetrics:
    """Every instrument the gateway's engine and adapters count with, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = CollectorRegistry() if registry is None else registry
        self.latency = {name: Histogram(f"voice_{name}", f"Turn latency {name} (milliseconds)", buckets=BUCKETS_MS,
                                        registry=r) for name in METRICS}
        self.turns = Counter("voice_turns_total", "Turns by outcome", ["outcome"], registry=r)
        self.end_of_turn_probability = Histogram(
            "voice_end_of_turn_probability", "The end-of-turn model's probability when a turn ended",
            buckets=PROBABILITY_BUCKETS, registry=r)
        self.speculations = Counter("voice_speculations_total", "Replies started on a pause hint: started, used, "
                                    "wasted", ["result"], registry=r)
        self.barge_ins = Counter("voice_barge_ins_total", "Speech over a reply: the reply resumed or was interrupted",
                                 ["result"], registry=r)
        self.admissions = Counter("voice_admissions_total", "New sessions: admitted, or refused and why", ["result"],
                                  registry=r)
        self.transcriptions_lost = Counter("voice_transcriptions_lost_total", "User words that could not be "
                                           "transcribed: the exchange is kept with them marked unknown", ["code"],
                                           registry=r)
        self.audio_throttled = Counter("voice_audio_throttled_total", "Audio messages that waited: for room in the "
                                       "audio byte budget (budget) or for the audio speed limit (speed)", ["reason"],
                                       registry=r)
        self.idle_closed = Counter("voice_sessions_idle_closed_total", "Sessions closed because the client sent "
                                   "nothing for the idle timeout", registry=r)
        self.stalled_closed = Counter("voice_sessions_stalled_closed_total", "Sessions closed because the client "
                                      "read nothing for the write timeout", registry=r)
        self.sessions = Gauge("voice_sessions_active", "Open conversation sessions", registry=r)
        self.stage_errors = Counter("voice_stage_errors_total", "Failed calls to a stage", ["stage", "code"],
                                    registry=r)

    @classmethod
    def process(cls) -> GatewayMetrics:
        """The instruments on the process's registry, the one the metrics port serves (built once)."""
        return cls(REGISTRY)

    def observe_turn(self, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self.latency[name].observe(value)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 before the first count): what a test or a probe reads."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def watch_event_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Export how many asyncio tasks the gateway holds: a leak shows as growth."""
        Gauge("voice_event_loop_tasks", "asyncio tasks alive in the gateway", registry=self.registry).set_function(
            lambda: len(asyncio.all_tasks(loop)))
