"""`make compose-check`'s generated override: every service it starts on the host network, bound to
127.0.0.1 on the check's ports, and the gpu profile's builds kept off the local CPU wheel."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools import compose_check

ROOT = Path(__file__).resolve().parents[3]
PORTS = {name: 41000 + i for i, name in enumerate(("redis", "vad", "voxtral", "tts", "gateway", "web", "metrics",
                                                   "voxtral_metrics", "tts_metrics"))}
WHEELS = "http://127.0.0.1:47391/"


class _Loader(yaml.SafeLoader):
    """Reads compose's `!reset` tag as the value it resets to."""


_Loader.add_constructor("!reset", lambda loader, node: {} if isinstance(node, yaml.MappingNode) else [])


@pytest.fixture
def override() -> dict:
    return yaml.load(compose_check.override_yaml(PORTS, WHEELS), Loader=_Loader)["services"]


def cpu_services() -> set[str]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {name for name, spec in services.items() if not spec.get("profiles") or "cpu" in spec["profiles"]}


def test_every_service_the_check_starts_is_on_the_host_network(override: dict) -> None:
    started = {name for name, spec in override.items() if "network_mode" in spec}
    assert started == cpu_services()
    assert all(override[name]["network_mode"] == "host" for name in started)
    assert override["gateway"]["ports"] == []  # no published ports: nothing on a bridge
    assert override["voxtral-cpu"]["networks"] == {} and override["tts-cpu"]["networks"] == {}


def test_services_bind_loopback_on_the_checks_own_ports(override: dict) -> None:
    env = {name: spec.get("environment", {}) for name, spec in override.items()}
    hosts = [value for spec in env.values() for key, value in spec.items() if key.endswith("_HOST")]
    assert hosts and set(hosts) == {"127.0.0.1"}
    assert env["gateway"]["GATEWAY_TTS_TARGET"] == f"127.0.0.1:{PORTS['tts']}"
    assert env["gateway"]["GATEWAY_REDIS__URL"] == f"redis://127.0.0.1:{PORTS['redis']}/0"
    assert str(PORTS["redis"]) in override["redis"]["command"] and "127.0.0.1" in override["redis"]["command"]
    assert override["vad"]["healthcheck"]["test"][-1] == f"127.0.0.1:{PORTS['vad']}"


def test_every_build_is_on_the_host_network_and_only_cpu_builds_see_the_cpu_wheel(override: dict) -> None:
    builds = {name: spec["build"] for name, spec in override.items() if "build" in spec}
    assert set(builds) == {"vad", "voxtral-cpu", "tts-cpu", "gateway", *compose_check.GPU_SERVICES}
    assert all(build["network"] == "host" for build in builds.values())
    for name in compose_check.GPU_SERVICES:  # torch==2.13.0 would match the local 2.13.0+cpu wheel
        assert "args" not in builds[name]
    assert builds["tts-cpu"]["args"] == {"PIP_FIND_LINKS": WHEELS, "TORCH_INDEX_URL": ""}


def test_gpu_services_are_the_compose_files_gpu_profile() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    gpu = {name for name, spec in services.items() if "gpu" in spec.get("profiles", [])}
    assert gpu == set(compose_check.GPU_SERVICES)
