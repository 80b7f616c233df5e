"""The browser page against the running system, in real headless Chromium with a fake
microphone playing a recording: the page hears the reply and shows a latency row."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from services.common.audio import resample
from tools.recordings import espeak, silence
from tools.stack import Stack

# The whole system and Chromium.
pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[1]
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
    """What the fake microphone says, looped: a question, then silence for the reply (heard at real
    time, so it lasts as long as its audio)."""
    speech, rate = espeak("What is the weather like today?")
    audio = np.concatenate([silence(rate, 500), speech, silence(rate, 15000)])
    path = folder / "microphone.wav"
    sf.write(path, resample(audio, rate, 48000), 48000, subtype="PCM_16")
    return path


def test_page_served(stack: Stack) -> None:
    page = urllib.request.urlopen(f"http://127.0.0.1:{stack.web_port}/", timeout=5).read().decode()
    assert 'id="talk"' in page and "/static/app.js" in page and 'aria-live="polite"' in page
    for asset in ("app.js", "capture-worklet.js", "playback-worklet.js", "style.css"):
        assert urllib.request.urlopen(f"http://127.0.0.1:{stack.web_port}/static/{asset}", timeout=5).status == 200


def test_a_spoken_question_in_chromium_gets_reply_audio_and_a_latency_row(stack: Stack, chromium: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "browser-page.png"
    with tempfile.TemporaryDirectory() as tmp:
        # Playwright runs it headless in a fresh temporary profile (its own --user-data-dir).
        args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone_file(Path(tmp))}",
                "--autoplay-policy=no-user-gesture-required"]
        env = {**os.environ, "CHROMIUM": chromium, "CHROMIUM_ARGS": json.dumps(args)}
        run = subprocess.run(["node", str(ROOT / "tests" / "browser" / "converse.mjs"),
                              f"http://127.0.0.1:{stack.web_port}/", str(screenshot)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "failure" not in result, result
    assert result["stats"]["audioBytes"] > 24000  # at least half a second of reply audio
    assert result["stats"]["turns"] >= 1
    assert {"session_started", "speech_started", "speech_ended", "response_text", "response_audio",
            "turn_completed"} <= set(result["stats"]["events"])
    assert "Voxtral first token" in result["row"] and "ms" in result["row"]
    assert result["button"] == "true" and result["problem"] == "" and result["reply"]
    assert screenshot.stat().st_size > 10_000
