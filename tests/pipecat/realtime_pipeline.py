"""Pipecat's stock OpenAIRealtimeLLMService, with the settings of Pipecat's own Realtime example,
in a pipeline against /v1/realtime. Runs in its own environment (.venv-pipecat):

    python realtime_pipeline.py WS_URL KEY AUDIO_FILE

AUDIO_FILE: 24 kHz PCM16 speech followed by silence. The example's opening ("Say hello!", a typed
user message from the context), a spoken turn (server VAD), and the question asked again and talked
over while its answer plays. Every server event the service parses is recorded as it arrives (the parser is
wrapped, not changed). Prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMRunFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.realtime import events, llm
from pipecat.services.openai.realtime.events import (
    AudioConfiguration,
    AudioInput,
    InputAudioNoiseReduction,
    InputAudioTranscription,
    SemanticTurnDetection,
    SessionProperties,
)
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

RATE = 24000
CHUNK = RATE * 2 // 50  # 20 ms of PCM16
STEP_TIMEOUT_S = 150.0

seen: list[dict[str, Any]] = []  # every server event: type, time, and for responses their id and status
parse = events.parse_server_event


def recording_parse(message: str) -> Any:
    """The service's own parser, with each event noted first (a failure to parse is noted too)."""
    body = json.loads(message)
    note: dict[str, Any] = {"type": body.get("type"), "t": time.monotonic()}
    if "response" in body:
        note["response"] = body["response"].get("id")
        note["status"] = body["response"].get("status")
    elif "response_id" in body:
        note["response"] = body["response_id"]
    seen.append(note)
    try:
        return parse(message)
    except Exception as err:
        note["parse_error"] = str(err)[:400]
        raise


llm.events.parse_server_event = recording_parse  # observed, not altered


class Tap(FrameProcessor):
    """Counts what passes: the bot's audio bytes, the user's transcripts, errors (any direction)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_bytes = 0
        self.transcripts: list[str] = []
        self.errors: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio_bytes += len(frame.audio)
        elif isinstance(frame, TranscriptionFrame):
            self.transcripts.append(frame.text)
        elif isinstance(frame, ErrorFrame):
            self.errors.append(frame.error)
        await self.push_frame(frame, direction)


def statuses(since: int = 0) -> list[str]:
    """The statuses of the responses done, from the `since`-th on."""
    return [e["status"] for e in seen if e["type"] == "response.done"][since:]


def answered_after_cancel(since: int) -> bool:
    later = statuses(since)
    return "cancelled" in later and "completed" in later[later.index("cancelled"):]


async def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} in {STEP_TIMEOUT_S:g} s")
        await asyncio.sleep(0.02)


async def speak(task: PipelineTask, audio: bytes) -> None:
    """The recording, paced as a microphone sends it."""
    start = time.monotonic()
    for n, i in enumerate(range(0, len(audio), CHUNK)):
        await task.queue_frame(InputAudioRawFrame(audio=audio[i:i + CHUNK], sample_rate=RATE, num_channels=1))
        await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))


async def converse(task: PipelineTask, tap: Tap, audio: bytes) -> dict[str, Any]:
    """Waits on what must come, however the end-of-turn model cuts the speech into turns (a pause
    inside the sentence may end a turn, whose reply the rest of the sentence then talks over)."""
    turns: dict[str, Any] = {}
    await task.queue_frames([LLMRunFrame()])  # the example's kick-off: "Say hello!"
    await until(lambda: statuses(), "response.done for the opening")
    turns["opening"] = {"audio_bytes": tap.audio_bytes}

    before, n = tap.audio_bytes, len(statuses())
    await speak(task, audio)
    await until(lambda: "completed" in statuses(n), "a completed response for the spoken turn")
    turns["spoken"] = {"audio_bytes": tap.audio_bytes - before}

    before = tap.audio_bytes
    await speak(task, audio)  # asked again...
    await until(lambda: tap.audio_bytes > before, "audio for the question asked again")
    n = len(statuses())
    await speak(task, audio)  # ...and talked over while the answer plays
    await until(lambda: answered_after_cancel(n), "a cancelled response, then the talk answered")
    turns["talked_over"] = {"audio_bytes": tap.audio_bytes - before}
    return turns


async def main(url: str, key: str, audio_file: str) -> dict[str, Any]:
    with open(audio_file, "rb") as f:
        audio = f.read()
    # Pipecat's foundational Realtime example's session, less its tools (not served yet).
    session = SessionProperties(
        audio=AudioConfiguration(input=AudioInput(
            transcription=InputAudioTranscription(), turn_detection=SemanticTurnDetection(),
            noise_reduction=InputAudioNoiseReduction(type="near_field"))),
        instructions="You are a helpful and friendly AI. Keep your responses concise, short, and to the point.")
    service = OpenAIRealtimeLLMService(api_key=key, base_url=url, settings=OpenAIRealtimeLLMService.Settings(
        model="voxtral", session_properties=session))
    context = LLMContext([{"role": "user", "content": "Say hello!"}])
    user, assistant = LLMContextAggregatorPair(context)
    head, mid, tail = Tap(), Tap(), Tap()  # mid: the user's transcripts go upstream from the service
    task = PipelineTask(Pipeline([head, user, mid, service, tail, assistant]), params=PipelineParams(),
                        idle_timeout_secs=None)
    runner = PipelineRunner(handle_sigint=False)
    running = asyncio.create_task(runner.run(task))
    result: dict[str, Any] = {}
    try:
        result["turns"] = await converse(task, tail, audio)
    except Exception as err:  # noqa: BLE001  # any failure is the test's verdict, printed with the events so far
        result["failure"] = f"{type(err).__name__}: {err}"
    finally:
        await task.cancel()
        await asyncio.wait_for(running, 30)
    result["events"] = [{k: (round(v, 4) if k == "t" else v) for k, v in e.items()} for e in seen]
    result["errors"] = head.errors + mid.errors + tail.errors
    result["transcripts"] = mid.transcripts
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))), flush=True)
