"""How well each signal the project can compute tells a finished sentence from one cut mid-phrase
(`make bench-turn-signal`): the evidence behind the end-of-turn figures.

The cases are the ones `bench.endpointing` plays: every sentence of the recordings up to its true end,
and every mid-phrase word boundary of them (the sentence up to that point), each with the recording's
room tone after it. For each case:
- Smart Turn v3.2's probability with 200..800 ms of silence after the last word (production code path);
- the final pitch: the last 50 ms of voice against the speaker's median over the case, in semitones
  (Praat's autocorrelation tracker; a statement's final fall is the classic prosodic cue);
- the transcript's last word (the recogniser's words): a closed-class word (article, preposition,
  conjunction, auxiliary, subject pronoun) does not end an English sentence.

The goals of the end-of-turn issue need one rule that ends >= 92 % of the finished sentences within
500 ms of their end (an ask at <= 400 ms of silence, plus the decision) while ending <= 10 % of the
cut ones. For each signal the table gives its AUC, the share of finished sentences it ends when at
most 10 % of cuts end, and the share of cuts it ends when 92 % of sentences end.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.endpointing import lead
from bench.report import write_results
from harness import speech_set as ss
from services.vad import models
from services.vad.config import MODELS_DIR
from services.vad.smart_turn import SmartTurn

ROOT = Path(__file__).resolve().parent.parent
RATE = ss.RATE
SILENCES_MS = (200, 300, 400, 600, 800)
FAST_MS = 400  # the last ask whose decision can still land within 500 ms of the true end
MAX_CUTS_ENDED = 0.10
MIN_SENTENCES_ENDED = 0.92
PITCH_WINDOW_S = 3
CLOSED_CLASS = frozenset((
    "a", "an", "the", "of", "to", "in", "on", "at", "for", "from", "with", "by", "into", "onto", "upon",
    "through", "over", "under", "about", "before", "after", "like", "as", "than", "and", "or", "but", "nor",
    "so", "yet", "because", "if", "that", "which", "who", "whose", "whom", "what", "where", "when", "while",
    "although", "though", "i", "we", "he", "she", "they", "is", "are", "was", "were", "be", "been", "being",
    "am", "do", "does", "did", "have", "has", "had", "will", "would", "shall", "should", "can", "could", "may",
    "might", "must", "my", "your", "our", "their", "his", "her", "its", "this", "these", "those",
))


@dataclass
class Case:
    recording: str
    finished: bool
    last_word: str
    p: dict[int, float] = field(default_factory=dict)  # silence ms -> Smart Turn probability
    pitch_end_st: float = 0.0


def cases(model: SmartTurn) -> list[Case]:
    out = []
    for name in ss.NAMES:
        x, tone, ws = ss.audio(name), ss.room_tone(name), ss.words(name)
        for s in ss.sentences(name):
            inside = [w for w in ws if s.start <= w.start < s.end]
            ends = [(s.end, inside[-1].text, True)]
            for b in s.breaks:
                before = [w for w in inside if w.end <= b]
                ends.append((ss.quietest_point(x, b), before[-1].text if before else "", False))
            for end, word, finished in ends:
                speech = x[s.start : end]
                case = Case(name, finished, word.lower().strip(".,?!;:\"'"), pitch_end_st=final_pitch(speech))
                for ms in SILENCES_MS:
                    heard = np.concatenate([lead(name), speech, ss.loop(tone, ms * RATE // 1000)])
                    case.p[ms] = model.probability(heard)
                out.append(case)
    return out


def final_pitch(speech: np.ndarray) -> float:
    """The last 50 ms of voice against the median of the last 3 s, in semitones (0 when unvoiced)."""
    import parselmouth

    sound = parselmouth.Sound(speech[-PITCH_WINDOW_S * RATE :].astype(np.float64), RATE)
    f0 = sound.to_pitch_ac(time_step=0.01, pitch_floor=60, pitch_ceiling=500).selected_array["frequency"]
    voiced = np.flatnonzero(f0 > 0)
    if len(voiced) < 5:
        return 0.0
    st = 12 * np.log2(f0[voiced])
    return float(np.mean(st[voiced >= voiced[-1] - 4]) - np.median(st))


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def auc(scores: np.ndarray, finished: np.ndarray) -> float:
    pos, neg = scores[finished], scores[~finished]
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def operating_points(scores: np.ndarray, finished: np.ndarray) -> dict[str, float]:
    """Over every threshold: the most sentences ended with <= 10 % of cuts, the fewest cuts with >= 92 %."""
    best_tpr, best_fpr = 0.0, 1.0
    for t in np.unique(scores):
        ended = scores >= t
        tpr, fpr = float(ended[finished].mean()), float(ended[~finished].mean())
        if fpr <= MAX_CUTS_ENDED:
            best_tpr = max(best_tpr, tpr)
        if tpr >= MIN_SENTENCES_ENDED:
            best_fpr = min(best_fpr, fpr)
    return {"sentences_ended_at_10pct_cuts": round(best_tpr, 3), "cuts_ended_at_92pct_sentences": round(best_fpr, 3)}


def combined_held_out(features: np.ndarray, finished: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Logistic regression scores, each recording scored by a fit on the others (no case judges itself)."""
    scores = np.zeros(len(finished))
    x = np.c_[(features - features.mean(0)) / (features.std(0) + 1e-9), np.ones(len(features))]
    y = finished.astype(float)
    for g in np.unique(groups):
        train = groups != g
        w = np.zeros(x.shape[1])
        for _ in range(2000):
            p = 1 / (1 + np.exp(-x[train] @ w))
            w -= 0.5 * (x[train].T @ (p - y[train]) / train.sum() + 0.01 * np.r_[w[:-1], 0])
        scores[~train] = x[~train] @ w
    return scores


def recogniser_ms(n: int) -> float:
    """faster-whisper tiny.en (the recogniser this project has) on the last 4 s, one core: one ask's cost."""
    from harness.asr import timed_words

    audio = ss.audio(ss.NAMES[1])[: 4 * RATE]
    timed_words(audio)
    start = time.perf_counter()
    for _ in range(n):
        timed_words(audio)
    return (time.perf_counter() - start) * 1000 / n


def signals(all_cases: Sequence[Case]) -> list[tuple[str, np.ndarray]]:
    p = {ms: np.array([c.p[ms] for c in all_cases]) for ms in SILENCES_MS}
    fast = [ms for ms in SILENCES_MS if ms <= FAST_MS]
    closed = np.array([c.last_word in CLOSED_CLASS for c in all_cases])
    pitch = np.array([c.pitch_end_st for c in all_cases])
    features = np.c_[[[logit(c.p[ms]) for ms in fast] for c in all_cases], pitch]
    groups = np.array([c.recording for c in all_cases])
    finished = np.array([c.finished for c in all_cases])
    out: list[tuple[str, np.ndarray]] = [(f"smart_turn at {ms} ms", p[ms]) for ms in SILENCES_MS]
    out += [
        (f"smart_turn, highest of the asks at {fast[0]}..{fast[-1]} ms", np.max([p[ms] for ms in fast], axis=0)),
        ("final pitch fall (semitones below the median)", -pitch),
        ("smart_turn asks + pitch, fit on the other recordings", combined_held_out(features, finished, groups)),
        ("smart_turn at 200 ms, vetoed by a closed-class last word (true transcript)", np.where(closed, 0.0, p[200])),
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--asr-runs", type=int, default=5, help="timed recogniser calls")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})  # one core, as the end-of-turn decisions get
    model = SmartTurn(models.verified(MODELS_DIR, models.SMART_TURN))
    all_cases = cases(model)
    finished = np.array([c.finished for c in all_cases])
    rows: list[dict[str, Any]] = []
    for name, scores in signals(all_cases):
        rows.append({"signal": name, "auc": round(auc(scores, finished), 3), **operating_points(scores, finished)})
        print(rows[-1], flush=True)
    summary = {
        "benchmark": "turn_signal",
        "recordings": ", ".join(ss.NAMES),
        "finished_sentences": int(finished.sum()),
        "mid_phrase_cuts": int((~finished).sum()),
        "needed": f">= {MIN_SENTENCES_ENDED:.0%} of sentences ended with <= {MAX_CUTS_ENDED:.0%} of cuts",
        "recogniser_ms_per_ask": round(recogniser_ms(args.asr_runs), 1),
        "signals": rows,
    }
    columns: list[str] = ["signal", "auc", "sentences_ended_at_10pct_cuts", "cuts_ended_at_92pct_sentences"]
    write_results(args.out, "turn_signal", summary, rows, columns)


if __name__ == "__main__":
    main()
