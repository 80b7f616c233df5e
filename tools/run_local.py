"""`make run`: Redis plus every service, as local processes, until Ctrl-C. The terminal gets a short
summary; each service's log goes to a file in a run folder (`make logs` follows them)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.local_redis import RedisProcess
from services.common.healthcheck import check
from tools.fetch_models import ENGLISH_VOXTRAL_DIR as ENGLISH_VOXTRAL

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / ".run"  # one folder per `make run`; .run/latest is the newest
REAL_VOXTRAL = "mistralai/Voxtral-Mini-3B-2507"


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


def say(label: str, text: str) -> None:
    print(f"  {label:9}{text}", flush=True)


def hub_reachable(model_id: str) -> bool:
    from huggingface_hub import model_info

    try:
        model_info(model_id, timeout=5)
    except Exception:  # noqa: BLE001  (offline, refused, rate-limited, gated: all mean "not from here")
        return False
    return True


def download(model_id: str) -> None:
    """Into the usual Hugging Face cache, with its progress bars; a cached model is checked, not fetched."""
    from huggingface_hub import snapshot_download

    print(f"downloading {model_id} (about 9 GB the first time) into the Hugging Face cache", flush=True)
    snapshot_download(model_id)


def choose_voxtral() -> str:
    """The model the Voxtral service loads: the one named, else the real Voxtral Mini when a GPU and
    the hub are there, else the small offline one (which answers gibberish), said in one line."""
    named = os.environ.get("VOXTRAL_MODEL_ID")
    if named:
        if not Path(named).exists() and os.environ.get("HF_HUB_OFFLINE") != "1" and hub_reachable(named):
            download(named)
            os.environ["HF_HUB_OFFLINE"] = "1"
        say("model", f"{named} (VOXTRAL_MODEL_ID)")
        return named
    import torch

    if torch.cuda.is_available() and hub_reachable(REAL_VOXTRAL):
        download(REAL_VOXTRAL)
        os.environ["HF_HUB_OFFLINE"] = "1"
        say("model", f"{REAL_VOXTRAL} on {torch.cuda.get_device_name(0)}")
        return REAL_VOXTRAL
    if not (ENGLISH_VOXTRAL / "config.json").exists():
        raise SystemExit(f"no Voxtral to run: `make models` builds the small offline one in {ENGLISH_VOXTRAL}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    why = "no GPU here" if not torch.cuda.is_available() else "the model hub cannot be reached"
    say("model", f"the small offline Voxtral ({why}): its answers are English sentences unrelated to what you "
        f"say; for real ones run on a GPU host with hub access, or set VOXTRAL_MODEL_ID={REAL_VOXTRAL}")
    return str(ENGLISH_VOXTRAL)


def check_ports_free(host: str, ports: list[int]) -> None:
    """Refuse to start over another run (its services would answer in place of these)."""
    for port in ports:
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                raise SystemExit(f"port {port} on {host} is in use (another `make run`?): stop that first")


def run_folder() -> Path:
    folder = RUNS / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    latest = RUNS / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(folder.name)
    return folder


Started = list[tuple[LocalService, subprocess.Popen[bytes]]]


def start_services(started: Started, host: str, logs: Path, redis_url: str) -> None:
    """Each service as a process, added to `started` as it starts (so a failure stops those before it)."""
    ports = {svc.name: svc.port for svc in SERVICES}
    for svc in SERVICES:
        env = {f"{svc.env_prefix}LOG_JSON": "false", **os.environ, f"{svc.env_prefix}HOST": host,
               f"{svc.env_prefix}PORT": str(svc.port), f"{svc.env_prefix}REDIS__URL": redis_url}
        for setting, peer in svc.peers:
            env[f"{svc.env_prefix}{setting}"] = f"{host}:{ports[peer]}"
        with (logs / f"{svc.name}.log").open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", f"services.{svc.name}"], cwd=ROOT, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append((svc, proc))


def wait_serving(started: Started, host: str, logs: Path, stopping: threading.Event) -> None:
    began = time.monotonic()
    waiting = {svc.name for svc, _ in started}
    deadline = began + float(os.environ.get("RUN_START_TIMEOUT_S", "900"))
    while waiting and not stopping.is_set():
        for svc, proc in started:
            if svc.name not in waiting:
                continue
            if proc.poll() is not None:
                raise SystemExit(f"{svc.name} exited with {proc.returncode} while starting: see "
                                 f"{(logs / f'{svc.name}.log').relative_to(ROOT)}")
            if check(f"{host}:{svc.port}", timeout_s=1.0) == "SERVING":
                waiting.discard(svc.name)
                say(svc.name, f"{host}:{svc.port}  ready after {time.monotonic() - began:.0f} s")
        if time.monotonic() > deadline:
            raise SystemExit(f"not serving in time: {sorted(waiting)} (see their logs in {logs})")
        time.sleep(0.2)


def watch(started: Started, logs: Path, stopping: threading.Event) -> None:
    """Until Ctrl-C, or until a service exits (then everything stops)."""
    while not stopping.is_set():
        for svc, proc in started:
            if proc.poll() is not None:
                print(f"{svc.name} exited with {proc.returncode}; stopping (its log: {logs / svc.name}.log)",
                      flush=True)
                stopping.set()
        time.sleep(0.5)


def stop_all(started: Started) -> None:
    for _, proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for _, proc in started:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    host = os.environ.get("RUN_HOST", "127.0.0.1")
    web, metrics = os.environ.get("GATEWAY_WEB_PORT", "8080"), os.environ.get("GATEWAY_METRICS_PORT", "9464")
    print("Voxtral speech-to-speech, on this machine:", flush=True)
    if not {"GATEWAY_API_KEY", "GATEWAY_API_KEY_FILE"} & set(os.environ):
        os.environ.setdefault("GATEWAY_AUTH_DISABLED", "true")  # local use on loopback: no key
    check_ports_free(host, [svc.port for svc in SERVICES] + [int(web), int(metrics)])
    os.environ["VOXTRAL_MODEL_ID"] = choose_voxtral()
    logs = run_folder()
    say("logs", f"{logs.relative_to(ROOT)}/  (make logs follows them)")
    redis = RedisProcess(port=int(os.environ.get("RUN_REDIS_PORT", "6379")))
    redis.start()
    say("redis", redis.url)
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    started: Started = []
    try:
        start_services(started, host, logs, redis.url)
        wait_serving(started, host, logs, stopping)
        if not stopping.is_set():
            print(f"ready. Open http://{host}:{web}/ and talk, or from another terminal:", flush=True)
            say("", ".venv/bin/python -m clients.converse examples/question.wav --out reply.wav")
            say("metrics", f"http://{host}:{metrics}/metrics   Ctrl-C stops everything.")
        watch(started, logs, stopping)
    finally:
        stop_all(started)
        redis.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
