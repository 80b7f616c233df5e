"""The small random-weight Voxtral, built once per test session through the real builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.voxtral.tiny import build_tiny_voxtral


@pytest.fixture(scope="session")
def tiny_voxtral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_voxtral(tmp_path_factory.mktemp("voxtral-tiny"))
