"""Pipecat's stock OpenAIRealtimeLLMService (pipecat-ai from PyPI, pinned in its own environment:
`make pipecat-env`), with the settings of Pipecat's own Realtime example, against a gateway on the
shared system: the example's opening (a typed user message), a spoken turn, and a question asked
again and talked over while its answer plays. The service is not changed; its parser is wrapped
to note each event."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from harness.stack import Stack
from tests.support.gateway_server import KEY, stack_stages, start
from tests.support.realtime_audio import speech_file
from tests.support.realtime_log import barge_ins, check_responses

ROOT = Path(__file__).resolve().parents[2]
PIPECAT = ROOT / ".venv-pipecat" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    not PIPECAT.exists() and not os.environ.get("CI"),
    reason="Pipecat's environment is not built here: `make pipecat-env` (CI always builds it)")


async def run_pipecat(url: str, audio: Path) -> dict:
    """The pipeline, while this process's event loop goes on serving the gateway it talks to."""
    proc = await asyncio.create_subprocess_exec(
        str(PIPECAT), str(ROOT / "tests" / "pipecat" / "realtime_pipeline.py"), url, KEY, str(audio), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 500)
    assert proc.returncode == 0, err.decode()[-4000:]
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_pipecats_stock_realtime_service_talks_and_is_interrupted(stack: Stack, tmp_path: Path) -> None:
    server, settings = await start(stack.redis, api_key=KEY, **stack_stages(stack))
    try:
        result = await run_pipecat(f"ws://127.0.0.1:{settings.web_port}/v1/realtime", speech_file(tmp_path))
    finally:
        await server.stop(0)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "pipecat-realtime.json").write_text(json.dumps(result, indent=1))
    assert "failure" not in result, (result.get("failure"), [e["type"] for e in result["events"]])
    events = result["events"]
    assert not [e for e in events if "parse_error" in e or e["type"] == "error"], events
    assert not result["errors"], result["errors"]
    turns = result["turns"]
    assert turns["opening"]["audio_bytes"] > 24000 and turns["spoken"]["audio_bytes"] > 24000, turns
    assert len([t for t in result["transcripts"] if t.strip()]) >= 3, result["transcripts"]  # each utterance's words
    statuses = check_responses(events)  # one response at a time, each created before it is done
    # Typed, then spoken: answered. Where the end-of-turn model took a pause inside the sentence for
    # its end, that reply is talked over by the rest of it; the verdict does not depend on where it cut.
    assert statuses[0] == "completed" and "completed" in statuses[1:], statuses
    # The answer talked over: cancelled at the speech, no audio of it after, then the speech answered.
    assert "cancelled" in statuses and "completed" in statuses[statuses.index("cancelled"):], statuses
    assert len(barge_ins(events)) == statuses.count("cancelled"), events
