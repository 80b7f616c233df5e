"""`make run`: Redis plus every service, as local processes, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.common.healthcheck import check
from services.voxtral.engine import model_note
from tools.fetch_models import ENGLISH_VOXTRAL_DIR as ENGLISH_VOXTRAL
from tools.local_redis import RedisProcess

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LocalService:
    name: str
    env_prefix: str
    port: int
    # Other services' addresses this one is told about: setting name -> service name.
    peers: tuple[tuple[str, str], ...] = ()


SERVICES = (
    LocalService("vad", "VAD_", 50052),
    LocalService("voxtral", "VOXTRAL_", 50053),
    LocalService("tts", "TTS_", 50054),
    LocalService("gateway", "GATEWAY_", 50051,
                 peers=(("VAD_TARGET", "vad"), ("VOXTRAL_TARGET", "voxtral"), ("TTS_TARGET", "tts"))),
)




def main() -> None:
    host = os.environ.get("RUN_HOST", "127.0.0.1")
    if not {"GATEWAY_API_KEY", "GATEWAY_API_KEY_FILE"} & set(os.environ):
        os.environ.setdefault("GATEWAY_AUTH_DISABLED", "true")  # local use on loopback: no key
    if "VOXTRAL_MODEL_ID" not in os.environ and (ENGLISH_VOXTRAL / "config.json").exists():
        # No model named: run offline on the small Voxtral trained here (`make models`).
        os.environ["VOXTRAL_MODEL_ID"] = str(ENGLISH_VOXTRAL)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print(f"voxtral  model {ENGLISH_VOXTRAL}: {model_note(str(ENGLISH_VOXTRAL))}; "
              "set VOXTRAL_MODEL_ID=mistralai/Voxtral-Mini-3B-2507 for the real one", flush=True)
    redis = RedisProcess(port=int(os.environ.get("RUN_REDIS_PORT", "6379")))
    redis.start()
    started: list[tuple[LocalService, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        ports = {svc.name: svc.port for svc in SERVICES}
        for svc in SERVICES:
            env = {**os.environ, f"{svc.env_prefix}HOST": host, f"{svc.env_prefix}PORT": str(svc.port),
                   f"{svc.env_prefix}REDIS__URL": redis.url}
            for setting, peer in svc.peers:
                env[f"{svc.env_prefix}{setting}"] = f"{host}:{ports[peer]}"
            proc = subprocess.Popen([sys.executable, "-m", f"services.{svc.name}"], cwd=ROOT, env=env)
            started.append((svc, proc))
        print(f"redis    {redis.url}", flush=True)
        waiting = {svc.name for svc, _ in started}
        deadline = time.monotonic() + float(os.environ.get("RUN_START_TIMEOUT_S", "600"))
        while waiting and not stopping:
            for svc, proc in started:
                if svc.name not in waiting:
                    continue
                if proc.poll() is not None:
                    raise SystemExit(f"{svc.name} exited with {proc.returncode} while starting")
                if check(f"{host}:{svc.port}", timeout_s=1.0) == "SERVING":
                    waiting.discard(svc.name)
                    print(f"{svc.name:8} {host}:{svc.port}  SERVING", flush=True)
            if time.monotonic() > deadline:
                raise SystemExit(f"not serving in time: {sorted(waiting)}")
            time.sleep(0.2)
        if not stopping:
            web = os.environ.get("GATEWAY_WEB_PORT", "8080")
            print(f"page     http://{host}:{web}/   (metrics: http://{host}:9464/metrics)", flush=True)
            print("all up; Ctrl-C stops everything", flush=True)
        while not stopping:
            for svc, proc in started:
                if proc.poll() is not None:
                    print(f"{svc.name} exited with {proc.returncode}; stopping", flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        for _, proc in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
