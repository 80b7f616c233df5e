"""Prometheus metrics of the gateway, named after the design's latency metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

from services.common.latency import METRICS

BUCKETS_MS = (5, 10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000)
STAGE_HISTOGRAMS = {name: Histogram(f"voice_{name}", f"Turn latency {name} (milliseconds)", buckets=BUCKETS_MS)
                    for name in METRICS}
TURNS = Counter("voice_turns_total", "Turns by outcome", ["outcome"])
END_OF_TURN_PROBABILITY = Histogram(
    "voice_end_of_turn_probability", "The end-of-turn model's probability when a turn ended",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0))
SPECULATIONS = Counter("voice_speculations_total", "Replies started on a pause hint: started, used, wasted",
                       ["result"])
BARGE_INS = Counter("voice_barge_ins_total", "Speech over a reply: the reply resumed or was interrupted", ["result"])
ADMISSIONS = Counter("voice_admissions_total", "New sessions: admitted, or refused and why", ["result"])
TRANSCRIPTIONS_LOST = Counter("voice_transcriptions_lost_total", "User words that could not be transcribed: the "
                              "exchange is kept with them marked unknown", ["code"])
AUDIO_THROTTLED = Counter("voice_audio_throttled_total", "Audio messages that waited: for room in the audio byte "
                          "budget (budget) or for the audio speed limit (speed)", ["reason"])
IDLE_CLOSED = Counter("voice_sessions_idle_closed_total", "Sessions closed because the client sent nothing "
                      "for the idle timeout")
STALLED_CLOSED = Counter("voice_sessions_stalled_closed_total", "Sessions closed because the client read nothing "
                         "for the write timeout")
SESSIONS = Gauge("voice_sessions_active", "Open conversation sessions")
STAGE_ERRORS = Counter("voice_stage_errors_total", "Failed calls to a stage", ["stage", "code"])


def observe_turn(metrics: Mapping[str, float]) -> None:
    for name, value in metrics.items():
        STAGE_HISTOGRAMS[name].observe(value)


def watch_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Export how many asyncio tasks the gateway holds: a leak shows as growth."""
    Gauge("voice_event_loop_tasks", "asyncio tasks alive in the gateway").set_function(
        lambda: len(asyncio.all_tasks(loop)))
