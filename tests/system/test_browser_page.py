"""The browser page against the running system, in real headless Chromium with a fake
microphone playing a recording: the page hears the reply and shows a latency row."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.recordings import espeak, silence
from harness.stack import Stack
from services.common.audio import resample

# The whole system and Chromium.

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists() or not (ROOT / "node_modules" / "playwright-core").exists():
        if os.environ.get("CI"):
            pytest.fail("chromium or playwright-core is missing: `make test` installs both")
        pytest.skip("chromium or playwright-core not installed")
    return CHROMIUM


def microphone_file(folder: Path) -> Path:
    """What the fake microphone says, looped: a question, then silence long enough for its reply and
    the typed turn's, however slow a loaded machine makes them (the loop's next question would
    interrupt a reply still playing)."""
    speech, rate = espeak("What is the weather like today?")
    audio = np.concatenate([silence(rate, 500), speech, silence(rate, 45000)])
    path = folder / "microphone.wav"
    sf.write(path, resample(audio, rate, 48000), 48000, subtype="PCM_16")
    return path


def spoken(folder: Path) -> list[str]:
    """The talk-over scenario's three utterances, each a WAV the page's microphone plays on cue."""
    paths = []
    for n, text in enumerate(("What is the weather like today?", "Mm.",
                              "Wait, stop, tell me about the sea instead, please.")):
        speech, rate = espeak(text)
        path = folder / f"said-{n}.wav"
        sf.write(path, np.concatenate([speech, silence(rate, 100)]), rate, subtype="PCM_16")
        paths.append(str(path))
    return paths


def test_page_served(stack: Stack) -> None:
    page = urllib.request.urlopen(f"http://127.0.0.1:{stack.web_port}/", timeout=5).read().decode()
    assert 'id="talk"' in page and "/static/app.js" in page and 'aria-live="polite"' in page
    for asset in ("app.js", "view.js", "capture-worklet.js", "playback-worklet.js", "style.css", "favicon.svg"):
        assert urllib.request.urlopen(f"http://127.0.0.1:{stack.web_port}/static/{asset}", timeout=5).status == 200


def drive(stack: Stack, chromium: str, scenario: str, when_broken: Callable[[], None] | None = None) -> dict:
    """Run tests/browser/converse.mjs; `when_broken` runs when the page has shown the failed turn."""
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Playwright runs it headless in a fresh temporary profile (its own --user-data-dir).
        args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone_file(Path(tmp))}",
                "--autoplay-policy=no-user-gesture-required"]
        env = {**os.environ, "CHROMIUM": chromium, "CHROMIUM_ARGS": json.dumps(args)}
        cues = spoken(Path(tmp)) if scenario == "talk-over" else []
        node = subprocess.Popen(["node", str(ROOT / "tests" / "browser" / "converse.mjs"),
                                 f"http://127.0.0.1:{stack.web_port}/", str(ARTIFACTS), scenario, *cues],
                                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert node.stdout is not None and node.stdin is not None
        lines = []
        for line in node.stdout:
            lines.append(line)
            if line.strip() == "broken" and when_broken is not None:
                when_broken()
                node.stdin.write("back\n")
                node.stdin.flush()
        node.wait(timeout=400)
    assert node.returncode == 0, node.stderr.read() if node.stderr else ""
    # What the page showed and what the gateway logged, kept to read a failure by.
    (ARTIFACTS / f"page-{scenario}.json").write_text(lines[-1])
    logged = stack.services["gateway"].logs
    (ARTIFACTS / f"gateway-{scenario}.log").write_text("".join(json.dumps(e) + "\n" for e in logged))
    result = json.loads(lines[-1])
    assert "failure" not in result, result
    assert not result["failedRequests"], result["failedRequests"]  # no 404, not even a favicon
    assert not [line for line in result["console"] if line.startswith(("pageerror", "error"))], result["console"]
    return result["steps"]


def test_a_spoken_turn_a_typed_turn_and_a_dropped_socket_each_leave_their_row(stack: Stack, chromium: str) -> None:
    steps = drive(stack, chromium, "talk")
    spoken, typed, reconnected, after = steps["spoken"], steps["typed"], steps["reconnected"], steps["after"]
    assert spoken["voices"] > 10  # the TTS's voices, offered for the choice
    config = spoken["stats"]["config"]  # the choices made on the page, in the session's config
    assert config["voice"] == "bf_emma" and config["end_of_turn_detector"] == "END_OF_TURN_DETECTOR_SILENCE"
    assert set(spoken["stats"]["endProbabilities"]) == {None}  # a fixed silence ended the turn, no model
    assert spoken["stats"]["audioBytes"] > 24000  # at least half a second of reply audio
    assert spoken["rows"][0]["outcome"] == "completed" and "Voxtral first token" in spoken["rows"][0]["text"]
    first = spoken["transcript"][0]
    assert first["outcome"] == "completed" and first["user"] and first["reply"]
    assert spoken["button"] == "true" and spoken["problem"] == ""
    assert {"speaking", "thinking", "user", "listening"} <= set(spoken["stats"]["states"])
    assert typed["transcript"][1]["user"] == "What is a good book for a train ride?"
    assert typed["rows"][1]["outcome"] == "completed" and typed["transcript"][1]["reply"]
    assert reconnected["stats"]["reconnects"] == 1 and "reconnecting" in reconnected["stats"]["states"]
    assert reconnected["stats"]["events"].count("session_started") == 2
    assert after["rows"][2]["outcome"] in ("completed", "interrupted") and after["problem"] == ""
    # One row per turn that ended, each counted once.
    assert after["stats"]["turns"] == len(after["rows"]) == sum(after["stats"]["outcomes"].values())


def test_a_failed_turn_leaves_a_row_and_the_page_recovers(faulty_stack: Stack, chromium: str) -> None:
    faulty_stack.services["tts"].kill()
    steps = drive(faulty_stack, chromium, "failure", when_broken=faulty_stack.restore)
    failed, recovered = steps["failed"], steps["recovered"]
    assert failed["rows"][0]["outcome"] == "failed" and "Failed in the TTS" in failed["rows"][0]["text"]
    assert failed["status"] == "listening"  # not stuck on "Thinking…"
    assert "down (the voice)" in failed["problem"]
    assert failed["transcript"][0]["outcome"] == "failed"
    assert recovered["rows"][-1]["outcome"] == "completed" and recovered["problem"] == ""
    assert recovered["stats"]["turns"] == len(recovered["rows"])


def test_talking_over_a_reply_pauses_it_then_a_cough_resumes_it_and_a_sentence_interrupts_it(
        stack: Stack, chromium: str) -> None:
    steps = drive(stack, chromium, "talk-over")
    resumed, done = steps["resumed"], steps["done"]
    assert resumed["rows"] == [] and resumed["transcript"][-1]["reply"]  # the "mm" is no turn: nothing ended
    stats = done["stats"]
    assert stats["pauses"] >= 2 and "reply_resumed" in stats["events"] and "paused" in stats["states"]
    rows = done["rows"]
    assert rows[0]["outcome"] == "interrupted" and "Interrupted: you spoke over it" in rows[0]["text"], rows
    assert rows[1]["outcome"] == "completed", rows  # the sentence that interrupted it, answered
    # After the "mm" was judged no turn the reply played on: speaking again before the interruption.
    states = stats["states"]
    assert "speaking" in states[states.index("paused"):], states
    turns = done["transcript"]
    assert len(turns) == len(done["rows"])  # the "mm-hmm" was no turn: no row, no transcript entry
    assert turns[0]["outcome"] == "interrupted" and "you spoke over it" in turns[0]["reply"]
    assert stats["turns"] == len(done["rows"]) == sum(stats["outcomes"].values())
