"""Start a service as a real process on an ephemeral port and learn the port from its log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.local_redis import free_port

ROOT = Path(__file__).resolve().parents[1]


class ServiceProcess:
    def __init__(self, module: str, env_prefix: str, env: dict[str, str] | None = None,
                 port: int | None = None, launcher: tuple[str, ...] = ()) -> None:
        """`launcher` prefixes the command (e.g. ("taskset", "-c", "0") to pin a core)."""
        self.module = module
        self.env_prefix = env_prefix
        self.env = env or {}
        self.port = port or free_port()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", f"{env_prefix}PORT": str(self.port),
                    f"{env_prefix}HOST": "127.0.0.1", **(env or {})}
        self.proc = subprocess.Popen(
            [*launcher, sys.executable, "-m", module], cwd=ROOT, env=full_env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.logs: list[dict[str, object]] = []
        self._listening = threading.Event()
        threading.Thread(target=self._read_logs, daemon=True).start()

    def _read_logs(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"raw": line.rstrip()}
            self.logs.append(entry)
            if entry.get("msg") == "listening":
                self._listening.set()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_listening(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.module} did not start: {self.logs[-20:]}")

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restarted(self) -> ServiceProcess:
        """A new process of the same service on the same port."""
        self.kill()
        return ServiceProcess(self.module, self.env_prefix, self.env, self.port)

    def wait_serving(self, timeout_s: float = 120.0) -> None:
        from services.common.healthcheck import check

        self.wait_listening(timeout_s)
        deadline = time.monotonic() + timeout_s
        while check(self.target, timeout_s=1.0) != "SERVING":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.module} is not serving: {self.logs[-20:]}")
            time.sleep(0.1)

    def messages(self) -> list[str]:
        return [str(e.get("msg", e.get("raw", ""))) for e in list(self.logs)]
