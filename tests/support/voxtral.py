"""The small Voxtral models, built through the real builders: the random-weight one once per test
session, the English one trained once and cached by its recipe (`make models` trains it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral
from tools.models.tiny import build_tiny_voxtral


@pytest.fixture(scope="session")
def tiny_voxtral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_voxtral(tmp_path_factory.mktemp("voxtral-tiny"))


@pytest.fixture(scope="session")
def english_voxtral() -> Path:
    return build_english_voxtral(ENGLISH_VOXTRAL_DIR)
