"""Everything under tests/unit: no process, no socket, no gRPC server or channel (each fails the
test that opens it), and none of the fixtures that start one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.isolation import forbid

HERE = Path(__file__).parent
SYSTEM_FIXTURES = {"redis", "redis_server", "stack", "faulty_stack", "gateway", "english_voxtral", "tiny_voxtral",
                   "certificate"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = SYSTEM_FIXTURES & set(getattr(item, "fixturenames", ()))
        if HERE in item.path.parents and used:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(used)}: a system test, move it to tests/system")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid(monkeypatch)
