"""End of turn on real recordings, detector by detector (`make bench-endpoint`).

Each case is played through the production `Endpointer` in stream order, 20 ms at a time; when it
asks the model, the answer is applied where the stream has got to once the decision's own measured
time has passed (as the service does in real time on an idle core). Figures:
- end_delay_ms: true end of speech (the signal's last 10 ms above the recording's noise floor +
  20 dB, next to the recogniser's last word) -> the speech-ended decision;
- false_end_rate: share of pauses inserted mid-phrase (0.4-1.5 s of the recording's room tone, at
  word boundaries from the recogniser's timestamps) that ended the turn;
- rising noise: speech followed by white or babble noise at -45..-30 dBFS (delay to the end), and
  five utterances separated by it (turns found, premature ends, spurious turns);
- room tone: speech followed by its recording's own room tone, and by coloured noise with that
  spectrum at -45 dBFS;
- steady noise: white noise at -40 dBFS under the whole signal;
- cost: Smart Turn per decision on one core, and VAD frame analysis per stream.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import platform
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_results
from harness import speech_set as ss
from services.common.latency import percentile
from services.vad import models
from services.vad.config import MODELS_DIR
from services.vad.endpointer import Ask, Endpointer, EndpointerConfig, EventKind, SpeechEvent
from services.vad.smart_turn import SmartTurn
from services.vad.turn_policy import Detector, TurnPolicy
from services.vad.voice import Backend, SileroModel

ROOT = Path(__file__).resolve().parent.parent
RATE = ss.RATE
STEP = RATE // 50  # 20 ms a push
LEVELS_DBFS = (-45, -40, -35, -30)
PAUSES_S = (0.4, 0.6, 0.8, 1.0, 1.2, 1.5)
TAIL_S = 3.5
GAP_S = 2.5  # between the five utterances of a rising-noise sequence
STEADY_DBFS = -40
# One sentence from each recording (and a second from the longest) for the noise cases.
NOISE_SENTENCES = 5

Judge = Callable[[np.ndarray], tuple[float, float]]
Player = Callable[[np.ndarray], list[SpeechEvent]]


@dataclass(frozen=True)
class DetectorRow:
    name: str
    config: Callable[[], EndpointerConfig]


def base(**kw: Any) -> EndpointerConfig:
    return EndpointerConfig(sample_rate_hz=RATE, **kw)


SERVICE: dict[str, Any] = {"snr_db": 9.0, "floor_window_ms": 1500}
DETECTORS = [
    DetectorRow("silence (seed: webrtc, 800 ms)", lambda: base()),
    DetectorRow("silence + noise floor", lambda: base(**SERVICE)),
    DetectorRow("smart_turn (default)", lambda: base(detector=Detector.SMART_TURN, **SERVICE)),
    DetectorRow("smart_turn, silero", lambda: base(detector=Detector.SMART_TURN, backend=Backend.SILERO, **SERVICE)),
    DetectorRow("smart_turn, asked every 100 ms (falling threshold)", lambda: base(
        detector=Detector.SMART_TURN, **SERVICE,
        policy=TurnPolicy(ask_until_ms=1500, threshold_start=0.9, threshold_end=0.5, fallback_ms=3000,
                          clean_fallback_ms=2000))),
]


def play_endpointer(audio: np.ndarray, config: EndpointerConfig, judge: Judge,
                    silero: SileroModel) -> list[SpeechEvent]:
    """Events for `audio`, with decided_at_sample where a real-time service would decide."""
    endpointer = Endpointer(config, silero)
    pcm = ss.pcm16(audio)
    events: list[SpeechEvent] = []
    waiting: list[tuple[int, Ask, float]] = []  # (apply at sample, ask, probability)
    for start in range(0, len(audio), STEP):
        position = min(len(audio), start + STEP)
        for at, ask, p in [w for w in waiting if w[0] <= start]:
            waiting.remove((at, ask, p))
            events += endpointer.answer(ask, p)
        for item in endpointer.push(pcm[start * 2 : position * 2]):
            if isinstance(item, Ask):
                p, ms = judge(item.audio)
                waiting.append((position + int(ms * RATE / 1000), item, p))
            else:
                events.append(item)
    return events + [e for e in endpointer.finish() if isinstance(e, SpeechEvent)]


def ends(events: list[SpeechEvent]) -> list[SpeechEvent]:
    return [e for e in events if e.kind is EventKind.ENDED]


def pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": round(float(max(values)), 1)}


def lead(name: str) -> np.ndarray:
    return ss.loop(ss.room_tone(name), RATE // 2)


def first_end_after(events: list[SpeechEvent], sample: int) -> float | None:
    """ms from `sample` to the first ENDED decided at or after it (None: never)."""
    later = [e.decided_at_sample for e in ends(events) if e.decided_at_sample >= sample]
    return (min(later) - sample) * 1000 / RATE if later else None


def tally(events: list[SpeechEvent], true_end: int, delays: list[float], counts: dict[str, int]) -> None:
    """Ends decided before the true end are premature; the first one after it gives the delay."""
    counts["premature"] += sum(e.decided_at_sample < true_end for e in ends(events))
    delay = first_end_after(events, true_end)
    if delay is None:
        counts["never"] += 1
    else:
        delays.append(delay)


def complete_sentences(play: Player) -> dict[str, Any]:
    delays: list[float] = []
    counts = {"never": 0, "premature": 0}
    for name in ss.NAMES:
        x, tone = ss.audio(name), ss.room_tone(name)
        for s in ss.sentences(name):
            pre = lead(name)
            audio = np.concatenate([pre, x[s.start : s.end], ss.loop(tone, int(TAIL_S * RATE))])
            true_end = len(pre) + s.end - s.start
            tally(play(audio), true_end, delays, counts)
    return {"end_delay_ms": pct(delays), "sentences": len(delays) + counts["never"], "never_ended": counts["never"],
            "premature_ends": counts["premature"]}


def mid_phrase_pauses(play: Player) -> dict[str, Any]:
    ended = total = 0
    lengths = itertools.cycle(PAUSES_S)
    for name in ss.NAMES:
        x, tone = ss.audio(name), ss.room_tone(name)
        for s in ss.sentences(name):
            for b in s.breaks:
                cut = ss.quietest_point(x, b)
                pause = int(next(lengths) * RATE)
                pre = lead(name)
                audio = np.concatenate([pre, x[s.start : cut], ss.loop(tone, pause), x[cut : s.end],
                                        ss.loop(tone, RATE)])
                cut_at = len(pre) + cut - s.start
                events = play(audio)
                total += 1
                ended += any(cut_at - RATE // 10 <= e.decided_at_sample <= cut_at + pause for e in ends(events))
    return {"false_end_rate": round(ended / max(1, total), 3), "pauses": total}


def noise_sentences() -> list[tuple[str, ss.Sentence]]:
    """Sentences spoken in one breath (no pause over 250 ms), longest first, taken in turn from each recording."""
    fluent = {n: sorted((s for s in ss.sentences(n) if s.longest_gap < RATE // 4), key=lambda s: s.start - s.end)
              for n in ss.NAMES}
    picked = [(n, s) for group in itertools.zip_longest(*fluent.values()) for n, s in zip(ss.NAMES, group,
                                                                                          strict=False) if s]
    return picked[:NOISE_SENTENCES]


def noise(kind: str, n: int, level: float, seed: int) -> np.ndarray:
    return ss.white(n, level, seed) if kind == "white" else ss.babble(n, level, seed)


def rising_noise(play: Player) -> dict[str, Any]:
    out: dict[str, Any] = {}
    picked = noise_sentences()
    for kind, level in itertools.product(("white", "babble"), LEVELS_DBFS):
        delays: list[float | None] = []
        for i, (name, s) in enumerate(picked):
            x = ss.audio(name)
            pre = lead(name)
            audio = np.concatenate([pre, x[s.start : s.end], noise(kind, int(TAIL_S * RATE), level, i)])
            delays.append(first_end_after(play(audio), len(pre) + s.end - s.start))
        # Five utterances separated by the noise (the noise fills the gaps).
        parts, spans, at = [lead(picked[0][0])], [], RATE // 2
        for i, (name, s) in enumerate(picked):
            speech = ss.audio(name)[s.start : s.end]
            spans.append((at, at + len(speech)))
            parts += [speech, noise(kind, int(GAP_S * RATE), level, 10 + i)]
            at += len(speech) + int(GAP_S * RATE)
        events = play(np.concatenate(parts))
        found, premature, late, spurious = 0, 0, [], 0
        for start, end in spans:
            inside = [e for e in ends(events) if start <= e.decided_at_sample < end]
            premature += len(inside)
            delay = first_end_after(events, end)
            if delay is not None and delay <= GAP_S * 1000:
                found += 1
                late.append(delay)
        for e in events:
            if e.kind is EventKind.STARTED and not any(a <= e.decided_at_sample <= b + RATE // 10 for a, b in spans):
                spurious += 1
        out[f"{kind}_{-level}"] = {
            "end_ms": pct([d for d in delays if d is not None]), "never_ended": sum(d is None for d in delays),
            "turns_found": found, "premature_ends": premature, "spurious_turns": spurious,
            "sequence_end_ms": pct(late),
        }
    return out


def room_tone(play: Player) -> dict[str, Any]:
    own: list[float | None] = []
    coloured: list[float | None] = []
    for name, s in noise_sentences():
        x, tone = ss.audio(name), ss.room_tone(name)
        pre = lead(name)
        speech = x[s.start : s.end]
        end = len(pre) + len(speech)
        own.append(first_end_after(play(np.concatenate([pre, speech, ss.loop(tone, int(TAIL_S * RATE))])), end))
        tail = ss.coloured_like(tone, int(TAIL_S * RATE), -45)
        coloured.append(first_end_after(play(np.concatenate([pre, speech, tail])), end))
    return {
        "own_room_tone": {"end_ms": pct([d for d in own if d is not None]), "never_ended": own.count(None)},
        "coloured_45": {"end_ms": pct([d for d in coloured if d is not None]), "never_ended": coloured.count(None)},
    }


def steady_noise(play: Player) -> dict[str, Any]:
    delays: list[float] = []
    counts = {"never": 0, "premature": 0}
    for i, (name, s) in enumerate(noise_sentences()):
        x = ss.audio(name)
        speech = np.concatenate([np.zeros(RATE // 2, np.float32), x[s.start : s.end], np.zeros(int(TAIL_S * RATE),
                                                                                                np.float32)])
        audio = speech + ss.white(len(speech), STEADY_DBFS, 100 + i)
        true_end = RATE // 2 + s.end - s.start
        tally(play(audio), true_end, delays, counts)
    return {"end_ms": pct(delays), "never_ended": counts["never"], "premature_ends": counts["premature"]}


PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_NAME = "peer: pipecat 1.14 Silero (stop 0.2 s) + Smart Turn v3.2"


class PeerPlayer:
    """bench/peer_pipecat.py in its own environment, one case at a time over a pipe."""

    def __enter__(self) -> PeerPlayer:
        self._proc = subprocess.Popen([str(PEER_PYTHON), str(ROOT / "bench" / "peer_pipecat.py")],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ,
                                      "LOGURU_LEVEL": "WARNING"})
        return self

    def __call__(self, audio: np.ndarray) -> list[SpeechEvent]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        pcm = ss.pcm16(audio)
        self._proc.stdin.write(struct.pack("<I", len(pcm) // 2) + pcm)
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the peer process ended")
        return [SpeechEvent(EventKind[kind], start, end, at) for kind, start, end, at in json.loads(line)]

    def __exit__(self, *exc: object) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(30)


def decision_cost(model: SmartTurn, n: int) -> dict[str, Any]:
    audio = ss.audio(ss.NAMES[1])[: RATE * 8]
    model.probability(audio)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        model.probability(audio)
        times.append((time.perf_counter() - start) * 1000)
    return {"smart_turn_ms": {"p50": percentile(times, 50), "p99": percentile(times, 99)},
            "decisions_per_s_per_core": round(1000 / float(np.mean(times)), 1)}


def frame_cost(config: EndpointerConfig, silero: SileroModel) -> float:
    """CPU seconds of frame analysis per second of audio, one stream (no model decisions)."""
    x = ss.audio(ss.NAMES[1])
    pcm = ss.pcm16(x)
    no_model = dataclasses.replace(config, detector=Detector.SILENCE) if config.detector is Detector.SMART_TURN \
        else config
    endpointer = Endpointer(no_model, silero)
    start = time.process_time()
    for i in range(0, len(pcm), STEP * 2):
        endpointer.push(pcm[i : i + STEP * 2])
    return (time.process_time() - start) / (len(x) / RATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--decisions", type=int, default=100, help="timed Smart Turn decisions")
    parser.add_argument("--only", default="", help="run only detectors whose name contains this")
    parser.add_argument("--snr-db", type=float, default=SERVICE["snr_db"], help="noise-floor gate (tuning)")
    parser.add_argument("--floor-window-ms", type=int, default=SERVICE["floor_window_ms"], help="(tuning)")
    args = parser.parse_args()
    SERVICE.update(snr_db=args.snr_db, floor_window_ms=args.floor_window_ms)
    os.sched_setaffinity(0, {0})  # one core: the per-decision and per-stream costs are one core's
    model = SmartTurn(models.verified(MODELS_DIR, models.SMART_TURN))
    silero = SileroModel(models.verified(MODELS_DIR, models.SILERO))

    def judge(audio: np.ndarray) -> tuple[float, float]:
        start = time.perf_counter()
        p = model.probability(audio)
        return p, (time.perf_counter() - start) * 1000

    cost = decision_cost(model, args.decisions)
    rows, detectors = [], []

    def measure(name: str, play: Player) -> dict[str, Any]:
        started = time.perf_counter()
        entry: dict[str, Any] = {"name": name, **complete_sentences(play), **mid_phrase_pauses(play),
                                 "rising_noise": rising_noise(play), "room_tone": room_tone(play),
                                 "steady_noise": steady_noise(play)}
        entry["seconds"] = round(time.perf_counter() - started, 1)
        return entry

    for d in DETECTORS:
        if args.only and args.only not in d.name:
            continue
        config = d.config()
        entry = measure(d.name, functools.partial(play_endpointer, config=config, judge=judge, silero=silero))
        frame_s = frame_cost(config, silero)
        entry["frame_cpu_per_audio_s"] = round(frame_s, 4)
        entry["streams_per_core_voice_only"] = int(1 / frame_s) if frame_s else None
        detectors.append(entry)
        rows.append(summary_row(entry))
        print(rows[-1], flush=True)
    if (not args.only or args.only in PEER_NAME) and PEER_PYTHON.exists():
        with PeerPlayer() as peer:
            detectors.append(measure(PEER_NAME, peer))
        rows.append(summary_row(detectors[-1]))
        print(rows[-1], flush=True)
    elif not PEER_PYTHON.exists():
        print(f"peer row left out: {PEER_PYTHON} is missing (make bench-endpoint builds it)", flush=True)
    summary = {
        "benchmark": "endpointing",
        "device": f"{platform.processor() or platform.machine()}, one core",
        "recordings": ", ".join(ss.NAMES),
        **cost,
        "detectors": detectors,
    }
    columns = ["detector", "end p50/p95 ms", "never", "false_end_rate", "rising: found/5 (premature, spurious)",
               "rising end max ms", "room tone end ms (never)", "steady end p50 ms"]
    write_results(args.out, "endpointing", summary, rows, columns)


def summary_row(e: dict[str, Any]) -> dict[str, Any]:
    rising = e["rising_noise"]
    found = "; ".join(f"{k} {v['turns_found']} ({v['premature_ends']}, {v['spurious_turns']})"
                      for k, v in rising.items())
    worst = max((v["sequence_end_ms"]["max"] or 0) for v in rising.values())
    tone = e["room_tone"]
    return {
        "detector": e["name"],
        "end p50/p95 ms": f"{e['end_delay_ms']['p50']} / {e['end_delay_ms']['p95']}",
        "never": e["never_ended"],
        "false_end_rate": e["false_end_rate"],
        "rising: found/5 (premature, spurious)": found,
        "rising end max ms": worst,
        "room tone end ms (never)": "; ".join(f"{k} {v['end_ms']['p50']} ({v['never_ended']})"
                                             for k, v in tone.items()),
        "steady end p50 ms": e["steady_noise"]["end_ms"]["p50"],
    }


if __name__ == "__main__":
    main()
