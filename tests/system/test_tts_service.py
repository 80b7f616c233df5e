"""TtsService over real gRPC with the real Kokoro-82M int8 ONNX, judged by a real speech recogniser."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
import pytest_asyncio

from harness.asr import transcribe, word_errors
from services.common.clauses import split_clauses
from services.common.limits import AUDIBLE_AMPLITUDE
from services.tts.config import TtsSettings
from tests.support.tts_server import pcm, speak, start
from voice.v1 import tts_pb2

TTS = tts_pb2.DESCRIPTOR.services_by_name["TtsService"]
# The real Kokoro model (make models).
pytestmark = pytest.mark.asyncio(loop_scope="module")

SENTENCES = [
    "The weather is sunny and warm today.",
    "Please open the window before you leave.",
    "My brother plays the guitar every evening.",
    "We need to buy milk, bread and eggs.",
    "The train to London leaves at nine o'clock.",
    "She reads a new book every week.",
    "Turn left at the next traffic light.",
    "Dinner will be ready in twenty minutes.",
    "The children are playing in the garden.",
    "Thank you very much for your help.",
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def tts():
    server, stub, channel = await start(timeout_s=30)
    yield stub, server
    await channel.close()
    await server.stop(0)


async def test_ten_sentences_are_understood_by_a_speech_recogniser(tts) -> None:
    stub, _ = tts
    errors = total = 0
    heard = []
    for sentence in SENTENCES:
        chunks = await speak(stub, sentence)
        assert chunks and all(c.sample_rate_hz == 24000 and c.voice == "af_heart" for c in chunks)
        said = await asyncio.to_thread(transcribe, pcm(chunks), 24000)
        e, n = word_errors(sentence, said)
        errors, total = errors + e, total + n
        heard.append(said)
    assert errors / total <= 0.10, f"WER {errors / total:.2%}: {heard}"


def clause_ends(text: str, chunks: list) -> list[int]:
    """Index of the chunk that ends each clause of `text`: the planner may cut a clause into pieces
    (more of them when the machine is slower), so tests reason per clause."""
    ends: list[int] = []
    spoken: list[str] = []
    clauses = split_clauses(text)
    for i, chunk in enumerate(chunks):
        spoken.append(chunk.text)
        if " ".join(spoken) == " ".join(clauses[: len(ends) + 1]):
            ends.append(i)
    assert len(ends) == len(clauses), ([c.text for c in chunks], clauses)  # every clause said, in order
    return ends


async def test_first_clause_streams_before_the_second_is_synthesised(tts) -> None:
    stub, server = tts
    engine = server.services[0].servicer.synthesizer.get().engine
    finished: list[float] = []
    real = engine.synthesize

    def timed(*args, **kwargs):
        audio = real(*args, **kwargs)
        finished.append(time.monotonic())
        return audio

    engine.synthesize = timed
    try:
        text = "The first sentence is here. The second one follows it. And a third closes the reply."
        arrivals, chunks = [], []
        async for chunk in stub.Synthesize(tts_pb2.SynthesizeRequest(text=text), timeout=60):
            arrivals.append(time.monotonic())
            chunks.append(chunk)
    finally:
        engine.synthesize = real
    assert split_clauses(text) == ["The first sentence is here.", "The second one follows it.",
                                   "And a third closes the reply."]
    ends = clause_ends(text, chunks)
    assert [c.segment_index for c in chunks] == list(range(len(chunks))) and len(finished) == len(chunks)
    assert arrivals[0] < finished[ends[0] + 1], "the first audio waited for the second sentence"


async def test_output_rate_is_resampled(tts) -> None:
    stub, _ = tts
    native = await speak(stub, "Resample this sentence please.")
    at_16k = await speak(stub, "Resample this sentence please.", sample_rate_hz=16000)
    assert all(c.sample_rate_hz == 16000 for c in at_16k)
    assert abs(len(pcm(at_16k)) / 16000 - len(pcm(native)) / 24000) < 0.02


@pytest.mark.parametrize("text", ["", " ", "a", "?", "..."])
async def test_too_short_replies_are_skipped_without_error(tts, text: str) -> None:
    stub, _ = tts
    assert await speak(stub, text) == []


@pytest.mark.parametrize(("fields", "detail"), [
    ({"text": "x" * 2001}, "the limit is 2000"),
    ({"text": "Hello there.", "voice": "zz_nobody"}, "call TtsService.ListVoices"),
    ({"text": "Hello there.", "sample_rate_hz": 96000}, "use an integer rate from 8000 to 48000"),
    ({"text": "Hello there.", "speed": 3.0}, "use 0.5 to 2.0"),
])
async def test_bad_input_is_invalid_argument(tts, fields, detail: str) -> None:
    stub, _ = tts
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await speak(stub, **fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in err.value.details()


async def test_list_voices(tts) -> None:
    stub, _ = tts
    reply = await stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
    names = {v.name for v in reply.voices}
    assert {"af_heart", "am_adam", "bf_emma"} <= names and reply.default_voice == "af_heart"
    assert reply.backend == "onnx (cpu)"
    assert {v.language for v in reply.voices} == {"en-us", "en-gb"}


async def test_british_voice_speaks_too(tts) -> None:
    stub, _ = tts
    chunks = await speak(stub, "Thank you very much for your help.", voice="bf_emma")
    e, n = word_errors("Thank you very much for your help.", await asyncio.to_thread(transcribe, pcm(chunks), 24000))
    assert e / n <= 0.2


async def test_request_past_its_timeout_is_deadline_exceeded_and_frees_its_slot() -> None:
    server, stub, channel = await start(timeout_s=0.3, max_queue=0)
    try:
        long_text = " ".join(SENTENCES)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await speak(stub, long_text)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        pool = server.services[0].servicer.synthesizer.get().pool
        for _ in range(100):  # the clause in flight finishes; then, and only then, its slot is free
            if pool.busy == 0:
                break
            await asyncio.sleep(0.05)
        assert pool.busy == 0 and pool.waiting == 0
    finally:
        await channel.close()
        await server.stop(0)


async def test_queue_overflow_is_resource_exhausted() -> None:
    server, stub, channel = await start(timeout_s=30, slots=1, max_queue=1)
    try:
        text = " ".join(SENTENCES[:4])
        calls = [asyncio.ensure_future(speak(stub, text)) for _ in range(3)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(refused) == 1 and refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "1 running and 1 queued" in refused[0].details()
        spoken = [r for r in results if isinstance(r, list)]
        assert len(spoken) == 2  # each whole, however many pieces the planner cut its sentences into
        assert all(len(clause_ends(text, r)) == 4 for r in spoken)
    finally:
        await channel.close()
        await server.stop(0)


async def test_emotional_mode_picks_voice_and_speed() -> None:
    server, stub, channel = await start(timeout_s=30, emotional=True, mood_voices={"apologetic": "af_nicole"})
    try:
        sorry = await speak(stub, "I am sorry, that request failed.")
        happy = await speak(stub, "That is wonderful news!")
        calm = await speak(stub, "The meeting is at noon.")
        assert {(c.voice, round(c.speed, 2)) for c in sorry} == {("af_nicole", 0.9)}
        assert {(c.voice, round(c.speed, 2)) for c in happy} == {("af_heart", 1.1)}
        assert {(c.voice, round(c.speed, 2)) for c in calm} == {("af_heart", 1.0)}
        # Faster speech is shorter speech.
        slow = await speak(stub, "That is wonderful news!", speed=0.6)
        assert len(pcm(slow)) > len(pcm(happy))
    finally:
        await channel.close()
        await server.stop(0)


@pytest.mark.parametrize("spinning", [False, True])
def test_onnx_spinning_setting_reaches_the_runtime(spinning: bool) -> None:
    from services.tts.engine import OnnxEngine

    settings = TtsSettings(onnx_spinning=spinning)
    engine = OnnxEngine(settings.models_dir / settings.onnx_model, settings.models_dir / settings.voices_file,
                        settings.onnx_threads, settings.onnx_spinning)
    options = engine._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spinning else "0")


def audible_edges_ms(samples: np.ndarray) -> tuple[float, float, list[float]]:
    """Leading and trailing silence (below -45 dBFS) and every silent run inside, in ms."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= AUDIBLE_AMPLITUDE * 32768)
    gaps = np.diff(loud) / 24
    return loud[0] / 24, (len(samples) - loud[-1] - 1) / 24, [float(g) for g in gaps if g > 1]


async def test_real_kokoro_audio_has_short_edges_and_natural_clause_pauses(tts) -> None:
    stub, _ = tts
    settings = TtsSettings()
    text = "The train leaves at nine, so we should hurry. It is a long way to the station."
    chunks = await speak(stub, text)
    assert len(chunks) >= 2
    edges = [audible_edges_ms(np.frombuffer(c.audio, dtype="<i2")) for c in chunks]
    assert edges[0][0] <= settings.lead_ms + 1  # Kokoro's own ~350 ms before the first word, cut away
    ends = clause_ends(text, chunks)
    for i, ((_, trailing, _), (leading, _, _)) in enumerate(zip(edges, edges[1:], strict=False)):
        if i in ends:  # each clause junction as heard
            assert trailing + leading == pytest.approx(settings.clause_pause_ms, abs=2)
        else:  # pieces of one clause (cut by the measured cost) meet with no pause
            assert trailing + leading <= settings.lead_ms + settings.tail_ms + 2
    assert edges[-1][1] <= settings.tail_ms + 1  # and ~500 ms after the last, cut to its decay
    _, _, inside = audible_edges_ms(pcm(chunks))
    assert max(inside) <= 400  # no dead air anywhere in the reply (a comma inside a clause: ~170 ms)
    followed = await speak(stub, "and then we walk.", more_follows=True)
    assert audible_edges_ms(np.frombuffer(followed[-1].audio, dtype="<i2"))[1] == pytest.approx(
        settings.clause_pause_ms - settings.lead_ms, abs=2)  # the pause is heard while the next is made
    said = await asyncio.to_thread(transcribe, pcm(chunks), 24000)
    assert word_errors(text, said)[0] <= 2, said


async def test_a_clause_needed_before_it_could_be_made_whole_is_cut_just_in_time(tts) -> None:
    """A clause the listener needs sooner than the measured engine can make it whole comes as its first
    words alone, then the rest: each piece in time, no pause inside the clause, every word said."""
    from services.tts.pieces import IN_TIME_SHARE

    stub, server = tts
    synthesizer = server.services[0].servicer.synthesizer.get()
    text = "The old lighthouse keeper walked slowly along the rocky shore looking for the little boat he had lost"
    whole = await speak(stub, text, need_in_ms=0)  # needed now: nothing to gain by cutting it
    assert [c.text for c in whole] == [text]
    count = synthesizer.plan(text, "af_heart")[0].count
    need_in_ms = int(synthesizer.cost.predict_ms(count // 2) / IN_TIME_SHARE)  # time for about half of it
    chunks = await speak(stub, text, need_in_ms=need_in_ms)
    assert len(chunks) >= 2 and " ".join(c.text for c in chunks) == text
    assert [c.segment_index for c in chunks] == list(range(len(chunks)))
    for before, after in zip(chunks, chunks[1:], strict=False):  # pieces of one clause meet with no pause
        trailing = audible_edges_ms(np.frombuffer(before.audio, dtype="<i2"))[1]
        leading = audible_edges_ms(np.frombuffer(after.audio, dtype="<i2"))[0]
        assert trailing + leading <= TtsSettings().lead_ms + TtsSettings().tail_ms + 2
    said = await asyncio.to_thread(transcribe, pcm(chunks), 24000)
    assert word_errors(text, said)[0] <= 2, said
