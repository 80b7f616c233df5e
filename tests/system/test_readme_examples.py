"""The README as a newcomer follows it: `make run`'s own launcher (its short summary, its run
folder), then the commands of "Talk to it" exactly as written there, and a tree left clean."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.local_redis import free_port

# Every service as real processes, on the README's ports.

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def commands(section: str) -> list[str]:
    """The shell commands of the first bash block after `section` (comments and `make` lines dropped:
    the test runs what they install itself)."""
    after = README[README.index(section):]
    block = re.search(r"```bash\n(.*?)```", after, re.S)
    assert block, f"no bash block after {section!r}"
    joined = block.group(1).replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines()
            if line.strip() and not line.startswith(("#", "make "))]


def git_status() -> set[str]:
    run = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False)
    return set(run.stdout.splitlines()) if run.returncode == 0 else set()


def test_make_run_then_the_readme_examples_as_written() -> None:
    before = git_status()
    env = {**os.environ, "RUN_REDIS_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    env.pop("VOXTRAL_MODEL_ID", None)
    subprocess.run(["make", "-s", "grpcurl"], cwd=ROOT, check=True, capture_output=True)
    launcher = subprocess.Popen([sys.executable, "-m", "tools.run_local"], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert launcher.stdout is not None
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 600
        for line in launcher.stdout:
            printed.append(line.rstrip())
            if line.startswith("ready.") or time.monotonic() > deadline:
                break
        printed += [launcher.stdout.readline().rstrip() for _ in range(2)]
        assert any(p.startswith("ready.") for p in printed), "\n".join(printed)
        assert len(printed) <= 20, "\n".join(printed)  # a summary, not the services' logs
        assert "small offline Voxtral" in printed[1]  # the model in effect, and what that means
        folder = ROOT / ".run" / "latest"
        assert {p.name for p in folder.iterdir()} == {"vad.log", "voxtral.log", "tts.log", "gateway.log"}

        client, grpcurl_list, metrics = commands("With `make run` up") + commands("The same API from grpcurl")
        said = subprocess.run(shlex.split(client), cwd=ROOT, capture_output=True, text=True, timeout=180,
                              check=False)
        assert said.returncode == 0, said.stdout + said.stderr
        assert "turn_ended      completed" in said.stdout and "wrote reply.wav" in said.stdout, said.stdout
        listed = subprocess.run(shlex.split(grpcurl_list), cwd=ROOT, capture_output=True, text=True, timeout=30,
                                check=True)
        assert "voice.v1.GatewayService" in listed.stdout
        session = re.search(r'session_id: "(\w+)"', said.stdout)
        assert session
        asked = subprocess.run(shlex.split(re.sub(r'"session_id": "\w+"', f'"session_id": "{session.group(1)}"',
                                                  metrics)), cwd=ROOT, capture_output=True, text=True, timeout=30,
                               check=True)
        assert '"turns": 1' in asked.stdout, asked.stdout
        log = (folder / "gateway.log").read_text()
        assert re.search(r"turn completed .*turn_id=\w+ outcome=completed", log), log[-2000:]
        assert "{" not in log.splitlines()[-1][:30]  # readable lines on a terminal, not JSON
        assert "mismatch" not in (folder / "tts.log").read_text()  # no phonemizer noise
    finally:
        launcher.send_signal(signal.SIGINT)
        rest, _ = launcher.communicate(timeout=60)
        (ROOT / "reply.wav").unlink(missing_ok=True)
    assert rest.strip().endswith("stopped")
    assert git_status() == before  # `make run` and the examples leave the tree as it was
