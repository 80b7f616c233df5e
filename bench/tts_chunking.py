"""Can Kokoro's vocoder render a clause a few frames at a time? (`make bench-tts-chunking`)

The shipped int8 graph is cut where the profile says the time goes: stage 1 (text to the
generator's input features, the harmonic source and the durations, for the whole clause) and
stage 2 (the iSTFTNet generator, ~90 % of a call). Stage 2 is then run on windows of frames with
context on both sides, and each way of rendering is compared with the whole-clause call on the
same clause: waveform SNR, log-spectral distance, the recogniser's word errors, the largest
sample step at the seams, and the compute before the first audio.

The generator normalises each of its AdaIN layers with the mean and variance over the whole clause
(ReduceMean over time, 88 of them in the graph), so a window sees other statistics than the whole
clause does. The study measures that directly: the same windows with the clause's own statistics
fed in (known only after a whole-clause pass: the ceiling), with the window's own (what streaming
can have), with statistics averaged over other clauses of the voice, and the whole clause without
its silent padding frames.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_results

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models" / "kokoro"
# Tensors of the kokoro-onnx v1.0 export where the cut is made.
FEATURES = "/decoder/decoder/decode.3/Div_4_output_0"  # the generator's input, 80 frames per second
SOURCE = "/decoder/decoder/generator/Concat_3_output_0"  # harmonic source spectrum and phase, 60 per frame
STYLE = "/decoder/Slice_output_0"  # the decoder's half of the voice style
DURATIONS = "/encoder/Clip_output_0"  # frames per token, at 40 per second
SAMPLES_PER_FRAME = 300
SOURCE_PER_FRAME = 60
VOICE = "af_heart"
CLAUSES = {  # about 1, 2.5 and 6 s of speech
    "short": "Sure, I can do that.",
    "medium": "I am not yet sure what you mean by that question.",
    "long": "The weather in Paris is lovely today, so you should walk along the river and see the old "
            "bridges before the sun goes down.",
}
# Other clauses of the voice, whose statistics are averaged for the fixed-statistics rendering.
CALIBRATION = ("Hello there, how can I help you today?", "That is a very good question.",
               "Let me think about it for a moment.", "The museum opens at nine and closes at six.",
               "I would take the train; it is faster than the bus.", "Well, it depends on what you like.")
CHUNK_FRAMES = 24  # 300 ms of audio per window
CONTEXT_FRAMES = 24  # each side


class SplitKokoro:
    """The shipped graph as stage 1 and stage 2, and stage 2 with its normalisation statistics
    read out (`probe`) or fed in (`fed`)."""

    def __init__(self, model_path: Path, threads: int) -> None:
        import onnx
        import onnx.utils
        import onnxruntime as ort

        graph = onnx.load(str(model_path))
        names = {o for n in graph.graph.node for o in n.output}
        missing = [t for t in (FEATURES, SOURCE, STYLE, DURATIONS) if t not in names]
        if missing:
            raise SystemExit(f"{model_path} is not the export this study cuts (no {missing})")
        extractor = onnx.utils.Extractor(graph)
        stage1 = extractor.extract_model([i.name for i in graph.graph.input], [FEATURES, SOURCE, STYLE, DURATIONS])
        stage2 = extractor.extract_model([FEATURES, SOURCE, STYLE], ["audio"])
        self.stats = [n.output[0] for n in stage2.graph.node if n.op_type == "ReduceMean"]
        probe = onnx.ModelProto()
        probe.CopyFrom(stage2)
        probe.graph.output.extend(onnx.helper.make_tensor_value_info(s, onnx.TensorProto.FLOAT, [1, None, 1])
                                  for s in self.stats)
        fed = onnx.ModelProto()
        fed.CopyFrom(stage2)
        kept = [n for n in fed.graph.node if n.op_type != "ReduceMean"]
        del fed.graph.node[:]
        fed.graph.node.extend(kept)
        fed.graph.input.extend(onnx.helper.make_tensor_value_info(s, onnx.TensorProto.FLOAT, [1, None, 1])
                               for s in self.stats)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.whole = ort.InferenceSession(str(model_path), options)
        self.stage1, self.stage2, self.probe, self.fed = (
            ort.InferenceSession(m.SerializeToString(), options) for m in (stage1, stage2, probe, fed))

    def features(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.stage1.run(None, feed))

    def window(self, features: np.ndarray, source: np.ndarray, style: np.ndarray, start: int, end: int,
               stats: Sequence[np.ndarray] | None = None) -> np.ndarray:
        feed = {FEATURES: features[:, :, start:end], SOURCE: source[:, :, SOURCE_PER_FRAME * start:
                                                                      SOURCE_PER_FRAME * end + 1], STYLE: style}
        if stats is None:
            return np.asarray(self.stage2.run(None, feed)[0]).ravel()
        return np.asarray(self.fed.run(None, {**feed, **dict(zip(self.stats, stats, strict=True))})[0]).ravel()

    def clause_stats(self, features: np.ndarray, source: np.ndarray, style: np.ndarray) -> list[np.ndarray]:
        out = self.probe.run(None, {FEATURES: features, SOURCE: source, STYLE: style})
        return [np.asarray(s) for s in out[1:]]


@dataclass
class Rendering:
    audio: np.ndarray
    first_ms: float  # compute before the first window's audio
    total_ms: float
    seams: list[int]  # sample offsets where windows meet
    frames: int  # frames rendered, context included


def chunked(split: SplitKokoro, features: np.ndarray, source: np.ndarray, style: np.ndarray,
            stats: Sequence[np.ndarray] | None) -> Rendering:
    frames = features.shape[2]
    out = np.zeros(frames * SAMPLES_PER_FRAME, dtype=np.float32)
    costs, seams, rendered = [], [], 0
    for start in range(0, frames, CHUNK_FRAMES):
        end = min(frames, start + CHUNK_FRAMES)
        lo, hi = max(0, start - CONTEXT_FRAMES), min(frames, end + CONTEXT_FRAMES)
        began = time.perf_counter()
        audio = split.window(features, source, style, lo, hi, stats)
        costs.append((time.perf_counter() - began) * 1000)
        rendered += hi - lo
        out[SAMPLES_PER_FRAME * start: SAMPLES_PER_FRAME * end] = \
            audio[SAMPLES_PER_FRAME * (start - lo): SAMPLES_PER_FRAME * (end - lo)]
        if start:
            seams.append(SAMPLES_PER_FRAME * start)
    return Rendering(out, costs[0], sum(costs), seams, rendered)


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((reference - other) ** 2))
    return round(10 * np.log10(float(np.sum(reference ** 2)) / max(noise, 1e-20)), 1)


def log_spectral_distance_db(reference: np.ndarray, other: np.ndarray, size: int = 1024, hop: int = 256) -> float:
    """RMS difference of the two log-magnitude spectrograms (dB), over the bins within 60 dB of the
    reference's loudest: silence does not count."""
    window = np.hanning(size)

    def spectrum(audio: np.ndarray) -> np.ndarray:
        frames = np.stack([audio[i: i + size] * window for i in range(0, len(audio) - size, hop)])
        return 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) + 1e-9)

    ref, oth = spectrum(reference), spectrum(other)
    heard = ref > ref.max() - 60
    return round(float(np.sqrt(np.mean((ref[heard] - np.maximum(oth[heard], ref.max() - 60)) ** 2))), 2)


def seam_step(audio: np.ndarray, seams: Sequence[int], reference: np.ndarray) -> dict[str, float]:
    """The largest sample-to-sample step at the seams, beside the whole-clause audio's own p99.9 step."""
    steps = np.abs(np.diff(reference))
    at = [float(abs(audio[s] - audio[s - 1])) for s in seams if 0 < s < len(audio)]
    return {"seam_step_max": round(max(at, default=0.0), 4),
            "whole_step_p999": round(float(np.quantile(steps, 0.999)), 4)}


def word_error_rate(audio: np.ndarray, text: str) -> float:
    from harness.asr import transcribe, word_errors

    errors, count = word_errors(text, transcribe((np.clip(audio, -1, 1) * 32767).astype(np.int16), 24000))
    return round(100 * errors / count, 1)


def study(threads: int) -> list[dict[str, Any]]:
    from services.tts.engine import OnnxEngine
    from services.tts.phonemes import shared_phonemizer
    from services.tts.voices import VoiceBank

    engine = OnnxEngine(MODELS / "kokoro-v1.0.int8.onnx", MODELS / "voices-v1.0.npz", threads=threads)
    split = SplitKokoro(MODELS / "kokoro-v1.0.int8.onnx", threads)
    pack = VoiceBank(MODELS / "voices-v1.0.npz").pack(VOICE)
    phonemizer = shared_phonemizer()

    def feed(text: str) -> dict[str, np.ndarray]:
        inputs = engine.inputs(phonemizer.phonemize(text), pack, 1.0)
        assert inputs is not None, text
        return inputs

    calibration = [split.clause_stats(*split.features(feed(t))[:3]) for t in CALIBRATION]
    fixed = [np.mean([c[k] for c in calibration], axis=0) for k in range(len(split.stats))]
    spread = [float(np.mean([np.abs(c[k] - fixed[k]).mean() for c in calibration]) / (np.abs(fixed[k]).mean() + 1e-9))
              for k in range(len(split.stats))]
    print(f"statistics across {len(CALIBRATION)} clauses: relative spread median {np.median(spread):.3f}", flush=True)
    rows = []
    for name, text in CLAUSES.items():
        f = feed(text)
        began = time.perf_counter()
        whole = np.asarray(split.whole.run(None, f)[0]).ravel()
        whole_ms = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        features, source, style, durations = split.features(f)
        stage1_ms = (time.perf_counter() - began) * 1000
        frames = features.shape[2]
        own = split.clause_stats(features, source, style)
        lead, tail = int(2 * durations.ravel()[0]), int(2 * durations.ravel()[-1])
        renderings = {
            "stage 1 + stage 2, whole clause": Rendering(split.window(features, source, style, 0, frames), 0, 0, [],
                                                         frames),
            "windows, the clause's own statistics (needs a whole pass first)": chunked(split, features, source,
                                                                                        style, own),
            "windows, each window's statistics (streaming)": chunked(split, features, source, style, None),
            "windows, the voice's average statistics": chunked(split, features, source, style, fixed),
        }
        unpadded = split.window(features, source, style, lead, frames - tail)
        base = {"clause": name, "speech_s": round(len(whole) / 24000, 2), "frames": frames,
                "whole_ms": round(whole_ms), "stage1_ms": round(stage1_ms), "wer_whole": word_error_rate(whole, text)}
        for label, r in renderings.items():
            rows.append({**base, "rendering": label, "snr_db": snr_db(whole, r.audio),
                         "lsd_db": log_spectral_distance_db(whole, r.audio), "wer": word_error_rate(r.audio, text),
                         "first_audio_ms": round(stage1_ms + r.first_ms) if r.seams else None,
                         "compute_ms": round(stage1_ms + r.total_ms) if r.seams else None,
                         "frames_rendered": r.frames, **seam_step(r.audio, r.seams, whole)})
            rows[-1] = {k: v for k, v in rows[-1].items() if v is not None}  # blank in the table
            print(rows[-1], flush=True)
        reference = whole[SAMPLES_PER_FRAME * lead: SAMPLES_PER_FRAME * (frames - tail)]
        rows.append({**base, "rendering": f"whole clause without its {lead + tail} padding frames",
                     "snr_db": snr_db(reference, unpadded), "lsd_db": log_spectral_distance_db(reference, unpadded),
                     "wer": word_error_rate(unpadded, text), "frames_rendered": frames - lead - tail})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    rows = study(args.threads)
    summary = {"benchmark": "tts_chunking", "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores)",
               "model": "kokoro-v1.0.int8.onnx", "voice": VOICE, "threads": args.threads,
               "window": {"chunk_frames": CHUNK_FRAMES, "context_frames": CONTEXT_FRAMES,
                          "ms_per_frame": 1000 * SAMPLES_PER_FRAME / 24000},
               "what": "stage 2 (the vocoder) on windows of frames against the whole-clause call", "rows": rows}
    write_results(args.out, "tts_chunking", summary, rows,
                  ["clause", "speech_s", "rendering", "snr_db", "lsd_db", "wer", "wer_whole", "first_audio_ms",
                   "compute_ms", "whole_ms", "frames_rendered", "frames", "seam_step_max", "whole_step_p999"])


if __name__ == "__main__":
    main()
