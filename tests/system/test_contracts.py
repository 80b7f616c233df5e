"""The voice.v1 contracts: generated code is fresh, buf STANDARD lint passes, DESIGN's RPCs exist."""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

import pytest

from tools.gen_proto import DEFAULT_OUT, generate
from voice.v1 import gateway_pb2, tts_pb2, vad_pb2, voxtral_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    committed = sorted(p for p in DEFAULT_OUT.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert [p.relative_to(tmp_path) for p in fresh] == [p.relative_to(DEFAULT_OUT) for p in committed], \
        "gen/ has other files than the protos produce: run `make proto`"
    stale = [str(p.relative_to(tmp_path)) for p in fresh
             if not filecmp.cmp(p, DEFAULT_OUT / p.relative_to(tmp_path), shallow=False)]
    assert not stale, f"generated code is stale against proto/: run `make proto` ({stale})"


def test_buf_standard_lint() -> None:
    buf = ROOT / "node_modules" / ".bin" / "buf"
    if not buf.exists():
        if os.environ.get("CI"):
            pytest.fail("buf is missing: `make install` installs it")
        pytest.skip("buf not installed (make install)")
    result = subprocess.run([str(buf), "lint"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "service", "method", "client_streaming", "server_streaming"),
    [
        (vad_pb2, "VadService", "StreamDetect", True, True),
        (vad_pb2, "VadService", "GetInfo", False, False),
        (voxtral_pb2, "VoxtralService", "Respond", False, True),
        (voxtral_pb2, "VoxtralService", "Transcribe", False, False),
        (voxtral_pb2, "VoxtralService", "GetInfo", False, False),
        (tts_pb2, "TtsService", "Synthesize", False, True),
        (tts_pb2, "TtsService", "ListVoices", False, False),
        (gateway_pb2, "GatewayService", "Converse", True, True),
        (gateway_pb2, "GatewayService", "GetSessionMetrics", False, False),
    ],
)
def test_design_rpcs(module, service, method, client_streaming, server_streaming) -> None:
    descriptor = module.DESCRIPTOR.services_by_name[service].methods_by_name[method]
    assert descriptor.full_name == f"voice.v1.{service}.{method}"
    assert (descriptor.client_streaming, descriptor.server_streaming) == (client_streaming, server_streaming)
    assert descriptor.input_type.name in (f"{method}Request", f"{service}{method}Request")
    assert descriptor.output_type.name in (f"{method}Response", f"{service}{method}Response")


def test_turn_metrics_message_uses_the_metric_names() -> None:
    from services.common.latency import METRICS

    assert tuple(f.name for f in gateway_pb2.TurnMetrics.DESCRIPTOR.fields) == METRICS

