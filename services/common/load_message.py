"""A stage's load to and from the voice.v1.StageLoad message (kept apart: the gateway's engine reads
StageLoad without any gRPC)."""

from __future__ import annotations

from services.common.load import StageLoad
from voice.v1 import load_pb2


def stage_load_message(load: StageLoad) -> load_pb2.StageLoad:
    return load_pb2.StageLoad(slots=load.slots, busy=load.busy, queued=load.queued, utilisation=load.utilisation,
                              late_p95_ms=load.late_p95_ms, window_s=load.window_s)


def stage_load_from_message(message: load_pb2.StageLoad) -> StageLoad:
    return StageLoad(message.slots, message.busy, message.queued, message.utilisation, message.late_p95_ms,
                     message.window_s)
