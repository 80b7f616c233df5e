"""Structured logs: one JSON object a line (or, for a terminal, one readable line), carrying the
session and turn in scope."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

session_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="")
turn_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("turn_id", default="")

# LogRecord attributes that are not user-supplied `extra` fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if session := session_id_var.get():
            entry["session_id"] = session
        if turn := turn_id_var.get():
            entry["turn_id"] = turn
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One readable line: time, level, service, message, then the same fields as the JSON line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {}
        if session := session_id_var.get():
            fields["session_id"] = session
        if turn := turn_id_var.get():
            fields["turn_id"] = turn
        fields.update((k, v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_"))
        extra = " ".join(f"{k}={round(v, 1) if isinstance(v, float) else v}" for k, v in fields.items())
        clock = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        line = f"{clock} {record.levelname:7} {self.service:8} {record.getMessage()}" + (f"  {extra}" if extra else "")
        return f"{line}\n{self.formatException(record.exc_info)}" if record.exc_info else line


def configure_logging(service: str, level: str = "INFO", *, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if json_lines else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


@contextlib.contextmanager
def bound(session_id: str | None = None, turn_id: str | None = None) -> Iterator[None]:
    """Within this block (and tasks started in it) log lines carry these ids."""
    tokens = []
    if session_id is not None:
        tokens.append((session_id_var, session_id_var.set(session_id)))
    if turn_id is not None:
        tokens.append((turn_id_var, turn_id_var.set(turn_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
