"""The G.711 codecs against the standard library's reference (audioop, still in Python 3.11)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from services.common import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

EVERY_SAMPLE = np.arange(-32768, 32768, dtype="<i2").tobytes()
EVERY_BYTE = bytes(range(256))


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), [
    (g711.ulaw_encode, g711.ulaw_decode, audioop.lin2ulaw, audioop.ulaw2lin),
    (g711.alaw_encode, g711.alaw_decode, audioop.lin2alaw, audioop.alaw2lin),
])
def test_every_value_matches_the_reference(encode, decode, ref_encode, ref_decode) -> None:
    assert encode(EVERY_SAMPLE) == ref_encode(EVERY_SAMPLE, 2)
    assert decode(EVERY_BYTE) == ref_decode(EVERY_BYTE, 2)
    assert encode(b"") == b"" and decode(b"") == b""
