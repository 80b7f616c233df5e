"""What a Realtime session's turn detection asks of the engine (one module, no server)."""

from __future__ import annotations

import pytest

from services.gateway.engine.vocabulary import Detector
from services.gateway.realtime.config import RealtimeConfig, apply


@pytest.mark.parametrize(("detection", "detector", "end_silence_ms", "fallback_ms", "manual"), [
    ({"type": "server_vad", "silence_duration_ms": 500}, Detector.SILENCE, 500, None, False),
    ({"type": "server_vad"}, None, None, None, False),  # the VAD's default decides
    ({"type": "semantic_vad", "eagerness": "high"}, None, None, 2000, False),
    (None, None, None, None, True),  # manual commits
])
def test_turn_detection_becomes_the_sessions_end_of_turn(detection: dict | None, detector: Detector | None,
                                                        end_silence_ms: int | None, fallback_ms: int | None,
                                                        manual: bool) -> None:
    config = apply(RealtimeConfig(), {"audio": {"input": {"turn_detection": detection}}})
    request = config.request("")
    assert request.end_of_turn_detector is detector and request.end_silence_ms == end_silence_ms
    assert request.end_of_turn_fallback_ms == fallback_ms and request.manual_turns is manual
