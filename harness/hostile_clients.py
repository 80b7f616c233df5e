"""Raw WebSocket clients that behave as hostile ones do (for the tests and `make bench-abuse`)."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

import numpy as np


def upgrade(sock: socket.socket, port: int, path: str = "/v1/realtime", api_key: str = "") -> None:
    """Send a WebSocket upgrade request (its answer is left unread)."""
    nonce = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n{auth}"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  ).encode())


def masked_frame(text: str) -> bytes:
    """A client's WebSocket text frame (RFC 6455: client frames are masked)."""
    payload = np.frombuffer(text.encode(), np.uint8)
    mask = os.urandom(4)
    size = len(payload)
    header = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
                              if size < 65536 else bytes([0x80 | 127]) + struct.pack("!Q", size))
    masked = payload ^ np.resize(np.frombuffer(mask, np.uint8), size)
    return header + mask + masked.tobytes()


def flooder(port: int, frame: bytes, seconds: float, api_key: str = "") -> tuple[socket.socket, int]:
    """A Realtime client sending `frame` as fast as the gateway takes it for `seconds`: how many went."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.connect(("127.0.0.1", port))
    upgrade(sock, port, api_key=api_key)
    sent, deadline = 0, time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            sock.sendall(frame)
        except TimeoutError:
            break  # still waiting for the gateway to read on when the time was up
        sent += 1
    return sock, sent
