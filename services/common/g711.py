"""G.711 μ-law and A-law, the telephony codecs (8 kHz, one byte a sample), to and from PCM16,
vectorised (the standard library's audioop is gone from Python 3.13)."""

from __future__ import annotations

import numpy as np

_ULAW_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159


def _pcm(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int32)


def ulaw_encode(pcm: bytes) -> bytes:
    x = _pcm(pcm) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    x = np.minimum(np.abs(x), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_ENDS, x)  # first segment whose end is >= x
    value = (np.minimum(seg, 7) << 4) | ((x >> (np.minimum(seg, 7) + 1)) & 0x0F)
    value = np.where(seg >= 8, 0x7F, value)
    return (value ^ mask).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> bytes:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    magnitude = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u >> 4) & 0x07)
    sample = np.where(u & 0x80, _ULAW_BIAS - magnitude, magnitude - _ULAW_BIAS)
    return sample.astype("<i2").tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    x = _pcm(pcm) >> 3
    mask = np.where(x >= 0, 0xD5, 0x55)
    x = np.where(x >= 0, x, -x - 1)
    seg = np.searchsorted(_ALAW_ENDS, x)
    low = np.where(seg < 2, (x >> 1) & 0x0F, (x >> np.maximum(seg, 1)) & 0x0F)
    value = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | low)
    return (value ^ mask).astype(np.uint8).tobytes()


def alaw_decode(data: bytes) -> bytes:
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = (a & 0x0F) << 4
    magnitude = np.where(exponent == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(exponent - 1, 0))
    sample = np.where(a & 0x80, magnitude, -magnitude)
    return sample.astype("<i2").tobytes()
