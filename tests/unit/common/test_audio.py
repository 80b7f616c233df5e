"""Audio helpers: validation, re-chunking that never drops or duplicates a byte, soxr resampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.audio import (
    FrameChunker,
    StreamResampler,
    check_mono_pcm16,
    check_sample_rate,
    pcm16_samples,
    resample,
)
from services.common.errors import InvalidArgument


@given(data=st.binary(max_size=4000), cuts=st.lists(st.integers(0, 4000), max_size=30),
       frame=st.sampled_from([1, 2, 320, 640, 960]))
def test_chunker_keeps_every_byte_in_order(data: bytes, cuts: list[int], frame: int) -> None:
    chunker = FrameChunker(frame)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    frames: list[bytes] = []
    for start, end in itertools.pairwise(bounds):
        frames += chunker.push(data[start:end])
    assert all(len(f) == frame for f in frames)
    assert b"".join(frames) + chunker.flush() == data
    assert chunker.pending == 0


def test_chunker_holds_an_odd_byte_until_its_pair_arrives() -> None:
    chunker = FrameChunker(4)
    assert chunker.push(b"\x01\x02\x03") == []
    assert chunker.pending == 3
    assert chunker.push(b"\x04\x05") == [b"\x01\x02\x03\x04"]
    assert chunker.pending == 1


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_supported_rates(rate: int) -> None:
    assert check_sample_rate(rate) == rate


@pytest.mark.parametrize("rate", [0, 7999, 48001, 96000])
def test_unsupported_rates_name_the_accepted_range(rate: int) -> None:
    with pytest.raises(InvalidArgument, match="8000 to 48000"):
        check_sample_rate(rate)


def test_format_checks() -> None:
    check_mono_pcm16("AUDIO_ENCODING_PCM16LE", 1)
    check_mono_pcm16("AUDIO_ENCODING_UNSPECIFIED", 0)
    with pytest.raises(InvalidArgument, match="only mono"):
        check_mono_pcm16("AUDIO_ENCODING_PCM16LE", 2)
    with pytest.raises(InvalidArgument, match="even byte count"):
        pcm16_samples(b"\x00\x01\x02")


def tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12000).astype(np.int16)


@pytest.mark.parametrize(("src", "dst"), [(48000, 16000), (44100, 16000), (22050, 16000), (24000, 48000)])
def test_resample_keeps_duration_and_pitch(src: int, dst: int) -> None:
    out = resample(tone(src, 1.0), src, dst)
    assert out.dtype == np.int16
    assert abs(len(out) - dst) <= 1
    spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
    assert abs(np.argmax(spectrum) * dst / len(out) - 440.0) < 2.0


def test_stream_resampler_matches_one_shot_without_seams() -> None:
    signal = tone(48000, 1.0)
    stream = StreamResampler(48000, 16000)
    pieces = [stream.process(signal[i : i + 777]) for i in range(0, len(signal), 777)]
    pieces.append(stream.process(signal[:0], last=True))
    streamed = np.concatenate(pieces)
    whole = resample(signal, 48000, 16000)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[100 : n - 100].astype(int) - whole[100 : n - 100].astype(int))) <= 2
