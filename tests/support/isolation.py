"""What makes a unit test: no process, no socket, no gRPC server or channel. `forbid` turns each
into an error that says where such a test belongs (tests/system)."""

from __future__ import annotations

import socket
import subprocess
from typing import Any, NoReturn

import grpc
import pytest

WHY = "a unit test may not open a {what}: it belongs in tests/system"


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(WHY.format(what=what))

    return refuse


def forbid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _refuse("socket"))
    monkeypatch.setattr(socket, "create_connection", _refuse("socket"))
    monkeypatch.setattr(subprocess, "Popen", _refuse("process"))
    for module, names in ((grpc, ("server", "insecure_channel", "secure_channel")),
                          (grpc.aio, ("server", "insecure_channel", "secure_channel"))):
        for name in names:
            monkeypatch.setattr(module, name, _refuse("gRPC server or channel"))
