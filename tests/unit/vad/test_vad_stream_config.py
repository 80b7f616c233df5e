"""A VAD stream's own settings over the service's defaults (the config message, checked)."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.vad.config import VadSettings
from services.vad.server import endpointer_config
from voice.v1 import audio_pb2, vad_pb2

FORMAT = audio_pb2.AudioFormat(sample_rate_hz=16000, encoding=audio_pb2.AUDIO_ENCODING_PCM16LE, channels=1)


def test_a_stream_may_set_its_end_of_turn_fallback() -> None:
    defaults = VadSettings()
    assert endpointer_config(vad_pb2.VadConfig(format=FORMAT), defaults).policy == defaults.policy()
    longer = endpointer_config(vad_pb2.VadConfig(format=FORMAT, end_of_turn_fallback_ms=8000), defaults).policy
    assert longer.fallback_ms == 8000 and longer.clean_fallback_ms == defaults.policy().clean_fallback_ms
    shorter = endpointer_config(vad_pb2.VadConfig(format=FORMAT, end_of_turn_fallback_ms=600), defaults).policy
    assert shorter.fallback_ms == 600 and shorter.clean_fallback_ms == 600  # never longer than the fallback
    with pytest.raises(InvalidArgument, match="end_of_turn_fallback_ms=50 is out of range: use 200 to 10000"):
        endpointer_config(vad_pb2.VadConfig(format=FORMAT, end_of_turn_fallback_ms=50), defaults)
