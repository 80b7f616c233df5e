"""One trace per turn across the four services: real processes exporting OTLP to a receiver this
test runs, a real question spoken to the gateway, and the turn's trace read back: every span of it,
from every service, parented to a span of the same trace under the one `turn` root."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.local_redis import free_port
from harness.otlp_receiver import Receiver, Span, exporting_to, receiving, render
from harness.stack import Stack

# Every service as real processes, tracing on.
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, int]]:
    with receiving() as running:
        yield running


@pytest.fixture(scope="module")
def traced_stack(english_voxtral: Path, receiver: tuple[Receiver, int]) -> Iterator[Stack]:
    running = Stack(english_voxtral, every_env=exporting_to(receiver[1]), GATEWAY_ADMISSION__ENABLED="false",
                    GATEWAY_METRICS_PORT=str(free_port()))
    yield running
    running.stop()


def test_a_spoken_turn_is_one_trace_across_the_four_services(traced_stack: Stack,
                                                            receiver: tuple[Receiver, int]) -> None:
    found, _ = receiver
    said = subprocess.run([sys.executable, "-m", "clients.converse", str(ROOT / "examples" / "question.wav"),
                           "--target", traced_stack.gateway], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          check=True)
    match = re.search(r'speech_started  turn_id: "(\w+)"', said.stdout)
    assert match and "turn_ended      completed" in said.stdout, said.stdout
    turn_id = match.group(1)
    wanted = {("gateway", name) for name in ("turn", "end_of_turn_wait", "voxtral.respond", "tts.synthesize",
                                             "voxtral.transcribe", "redis.append_exchange", "redis.record_turn")}
    wanted |= {("vad", "vad.utterance"), ("vad", "vad.end_of_turn_model")}
    wanted |= {("voxtral", name) for name in ("voxtral.queue", "voxtral.generate", "/voice.v1.VoxtralService/Respond",
                                              "/voice.v1.VoxtralService/Transcribe")}
    wanted |= {("tts", name) for name in ("tts.queue", "tts.compute", "/voice.v1.TtsService/Synthesize")}
    deadline = time.monotonic() + 30
    spans: list[Span] = []
    while time.monotonic() < deadline:
        roots = [s for s in found.spans if s.name == "turn" and s.attributes.get("turn_id") == turn_id]
        if roots:
            spans = [s for s in found.spans if s.trace_id == roots[0].trace_id]
            if wanted <= {(s.service, s.name) for s in spans}:
                break
        time.sleep(0.2)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "turn-trace.txt").write_text(render(spans) + "\n")
    assert wanted <= {(s.service, s.name) for s in spans}, render(spans)
    ids = {s.span_id: s for s in spans}
    [root] = [s for s in spans if not s.parent_id]
    assert root.name == "turn" and root.attributes["outcome"] == "completed"
    assert root.attributes["session_id"] and float(str(root.attributes["e2e_ms"])) > 0
    assert all(s.parent_id in ids for s in spans if s is not root), render(spans)  # all parented in the trace

    def ancestors(s: Span) -> list[str]:
        chain = []
        while s.parent_id:
            s = ids[s.parent_id]
            chain.append(f"{s.service}:{s.name}")
        return chain

    generate = next(s for s in spans if s.name == "voxtral.generate"
                    and "gateway:voxtral.respond" in ancestors(s))
    assert ancestors(generate)[-1] == "gateway:turn"
    assert any("gateway:tts.synthesize" in ancestors(s) for s in spans if s.name == "tts.compute")
    assert all(ancestors(s) == ["gateway:turn"] for s in spans if s.service == "vad" and s.name == "vad.utterance")
    assert "first_token" in next(s for s in spans if s.name == "voxtral.respond").events
