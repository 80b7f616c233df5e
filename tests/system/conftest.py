"""Everything under tests/system: real processes, real models and recordings, sockets. Marked
`system` here, once (`make test-fast` runs tests/unit only)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.system)
