"""Smart Turn v3.2: the probability that the speaker has finished their turn, from the audio alone.

Input: the last 8 s of the utterance at 16 kHz (left zero-padded when shorter), as Whisper log-mel
features (80 x 800, waveform normalised first); output: a sigmoid probability. One decision is
~80 ms of one core, so decisions run in a bounded thread pool off the event loop (`DecisionPool`),
and onnxruntime gets one intra-op thread per decision: parallelism comes from the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 16000
WINDOW_S = 8
WINDOW_SAMPLES = SAMPLE_RATE_HZ * WINDOW_S


class SmartTurn:
    """The ONNX model and its feature extractor; `probability()` is safe from several threads."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort
        from transformers import WhisperFeatureExtractor

        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        # Idle onnxruntime threads would spin on the cores the voice detection needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._features = WhisperFeatureExtractor(feature_size=80, chunk_length=WINDOW_S)
        self._local = threading.local()

    def probability(self, audio: np.ndarray) -> float:
        """audio: 16 kHz mono float32 in [-1, 1], any length; only the last 8 s count."""
        window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        tail = audio[-WINDOW_SAMPLES:]
        if len(tail):
            window[-len(tail):] = tail
        features = self._features(window, sampling_rate=SAMPLE_RATE_HZ, return_tensors="np", padding="max_length",
                                  max_length=WINDOW_SAMPLES, truncation=True, do_normalize=True)
        out = self._session.run(None, {"input_features": features["input_features"].astype(np.float32)})
        return float(np.asarray(out[0]).reshape(-1)[0])


# Decision threads run at a lower priority than the event loop's: on a busy core a burst of
# decisions waits (ends come later), the voice detection of every stream does not.
DECISION_NICENESS = 10


def _yield_to_voice_detection() -> None:
    # Linux takes a thread id here; a platform without per-thread priorities runs the pool as is.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECISION_NICENESS)


class DecisionPool:
    """Runs Smart Turn decisions on `workers` threads. Never blocks the event loop; `pending` is
    bounded so a burst of pauses cannot queue work without limit (an ask over the bound is
    answered None: the caller keeps listening and the fallback still ends the turn)."""

    def __init__(self, model: SmartTurn, workers: int, max_pending: int) -> None:
        self.model = model
        self.max_pending = max_pending
        self.pending = 0
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smart-turn",
                                            initializer=_yield_to_voice_detection)
        self.decisions = 0
        self.refused = 0

    async def probability(self, audio: np.ndarray) -> tuple[float | None, float]:
        """(probability or None when the pool is full, milliseconds the decision took)."""
        if self.pending >= self.max_pending:
            self.refused += 1
            return None, 0.0
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._timed, audio)
        finally:
            self.pending -= 1

    def _timed(self, audio: np.ndarray) -> tuple[float, float]:
        start = time.perf_counter()
        p = self.model.probability(audio)
        self.decisions += 1
        return p, (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
