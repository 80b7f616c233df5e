"""Settings are validated with a message naming the variable; log lines are JSON with ids."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic_settings import SettingsConfigDict

from services.common.logs import JsonFormatter, bound
from services.common.settings import RedisSettings, ServerSettings, load_settings


class DemoSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", env_nested_delimiter="__", frozen=True)
    redis: RedisSettings = RedisSettings()


def test_defaults_and_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_PORT", "50099")
    monkeypatch.setenv("DEMO_REDIS__URL", "redis://example:6380/1")
    settings = load_settings(DemoSettings)
    assert settings.port == 50099 and settings.host == "127.0.0.1"
    assert settings.redis.url == "redis://example:6380/1"
    assert settings.redis.context_exchanges == 5 and settings.redis.turn_records == 20


@pytest.mark.parametrize(("var", "value", "expected"), [
    ("DEMO_PORT", "seventy", "DEMO_PORT: Input should be a valid integer"),
    ("DEMO_PORT", "70000", "DEMO_PORT: Input should be less than or equal to 65535"),
    ("DEMO_LOG_LEVEL", "LOUD", "DEMO_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ("DEMO_REDIS__OP_BUDGET_MS", "0", "DEMO_REDIS__OP_BUDGET_MS: Input should be greater than or equal to 5"),
])
def test_bad_value_exits_with_a_clear_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              var: str, value: str, expected: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(DemoSettings)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid DemoSettings settings" in err and expected in err and repr(value) in err


def test_json_log_lines_carry_session_and_turn_ids() -> None:
    formatter = JsonFormatter("gateway")
    record = logging.LogRecord("voice", logging.INFO, __file__, 1, "turn done %s", ("ok",), None)
    record.e2e_ms = 212.5
    with bound(session_id="abc", turn_id="t7"):
        entry = json.loads(formatter.format(record))
    assert entry["msg"] == "turn done ok" and entry["service"] == "gateway" and entry["level"] == "INFO"
    assert entry["session_id"] == "abc" and entry["turn_id"] == "t7" and entry["e2e_ms"] == 212.5
    outside = json.loads(formatter.format(record))
    assert "session_id" not in outside and "turn_id" not in outside
