"""The GPU run's script, rehearsed on this CPU with the small random Voxtral (real engine, real
service, real gRPC streams), so it cannot rot between the draws that lend a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_script_measures_every_variant_and_stream_level_it_is_asked_for(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu.voxtral_gpu", "--small", "--variants", "eager,static", "--runs", "1",
         "--tokens", "4", "--levels", "1,3", "--out", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_rehearsal.json").read_text())
    for name in ("eager", "static"):
        for seconds in ("1", "3", "10"):
            first = results[f"first_token_ms_{seconds}s_{name}"]
            assert first["p50"] is not None and first["p50"] > 0
        assert results[f"tokens_per_s_{name}"] > 0
    assert results["speed_vs_eager_static"] > 0
    for n in (1, 3):
        level = results[f"service_streams_{n}"]
        assert level["served"] == n and level["first_token_ms"]["p95"] > 0 and level["tokens_per_s_total"] > 0
    assert "3 streams: first token" in done.stdout  # the short table, printed last
