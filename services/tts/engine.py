"""Kokoro-82M behind one small interface: `onnx` (kokoro-onnx, onnxruntime) and `kokoro`
(hexgrad's KModel, PyTorch). Both take misaki phonemes and the same voice packs."""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from services.tts.voices import VoiceBank

SAMPLE_RATE = 24000
# The model's context: 512 positions, two of them the boundary tokens.
MAX_PHONEMES = 510
ONNX_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}
KMODEL_PARTS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")


class Stopped(Exception):
    """A synthesis stopped before it finished: its caller went."""


class Run:
    """One synthesis that another thread may stop: onnxruntime ends the running graph at its next
    node; the PyTorch backend can only be kept from starting."""

    def __init__(self) -> None:
        import onnxruntime as ort

        self.options = ort.RunOptions()
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()
        self.options.terminate = True


class SpeechEngine(Protocol):
    backend: str
    device: str
    vocab: dict[str, int]

    def synthesize(self, phonemes: str, pack: np.ndarray, speed: float, run: Run | None = None) -> np.ndarray:
        """float32 audio at 24 kHz for at most MAX_PHONEMES phonemes; Stopped when `run` is stopped."""
        ...


def count_phonemes(vocab: dict[str, int], phonemes: str) -> int:
    return sum(p in vocab for p in phonemes)


class OnnxEngine:
    backend = "onnx"

    def __init__(self, model_path: Path, voices_path: Path, threads: int = 0, spinning: bool = False) -> None:
        import onnxruntime as ort
        from kokoro_onnx import Kokoro

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        session = ort.InferenceSession(str(model_path), options, providers=ort.get_available_providers())
        self.device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
        self._session = session
        self._tokenizer = Kokoro.from_session(session, str(voices_path)).tokenizer
        self.vocab = dict(self._tokenizer.vocab)
        # The graph's own input names and types (exports differ: "tokens" or "input_ids", float or int speed).
        self._inputs = {i.name: ONNX_TYPES[i.type] for i in session.get_inputs()}
        self._tokens = "input_ids" if "input_ids" in self._inputs else "tokens"

    def inputs(self, phonemes: str, pack: np.ndarray, speed: float) -> dict[str, np.ndarray] | None:
        """The graph's inputs for these phonemes; None when none of them is in the vocabulary."""
        tokens = self._tokenizer.tokenize(phonemes)
        if not tokens:
            return None
        return {
            self._tokens: np.array([[0, *tokens, 0]], dtype=self._inputs[self._tokens]),
            "style": np.asarray(VoiceBank.style(pack, len(tokens)), dtype=self._inputs["style"]),
            # An export with an integer speed input takes whole speeds only.
            "speed": np.array([speed if self._inputs["speed"] == np.float32 else max(1, round(speed))],
                              dtype=self._inputs["speed"]),
        }

    def synthesize(self, phonemes: str, pack: np.ndarray, speed: float, run: Run | None = None) -> np.ndarray:
        import onnxruntime as ort

        feed = self.inputs(phonemes, pack, speed)
        if feed is None:
            return np.zeros(0, dtype=np.float32)
        if run is not None and run.stopped.is_set():
            raise Stopped("stopped before it started")
        try:
            outputs = self._session.run(None, feed, run.options if run is not None else None)
        except ort.capi.onnxruntime_pybind11_state.Fail:
            if run is not None and run.stopped.is_set():
                raise Stopped("stopped while running") from None
            raise
        return np.asarray(outputs[0], dtype=np.float32).ravel()


def load_kmodel(config_path: Path, weights_path: Path, device: str) -> object:
    """A KModel with every weight loaded strictly: KModel's own loader skips missing keys silently."""
    import torch
    from kokoro import KModel

    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    missing = [part for part in KMODEL_PARTS if part not in state]
    unknown = [part for part in state if part not in KMODEL_PARTS]
    if missing or unknown:
        raise ValueError(f"{weights_path}: missing parts {missing}, unexpected parts {unknown}")
    with tempfile.NamedTemporaryFile(suffix=".pth") as empty:
        torch.save({}, empty.name)  # random init; the real weights follow, strictly
        model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(config_path), model=empty.name)
    for part in KMODEL_PARTS:
        weights = state[part]
        if all(k.startswith("module.") for k in weights):
            weights = {k[len("module."):]: v for k, v in weights.items()}
        getattr(model, part).load_state_dict(weights, strict=True)
    return model.to(device).eval()


class TorchEngine:
    backend = "kokoro"

    def __init__(self, config_path: Path, weights_path: Path, device: str) -> None:
        import torch

        self._torch = torch
        self.device = device
        self._model = load_kmodel(config_path, weights_path, device)
        self.vocab = json.loads(config_path.read_text())["vocab"]

    def synthesize(self, phonemes: str, pack: np.ndarray, speed: float, run: Run | None = None) -> np.ndarray:
        if run is not None and run.stopped.is_set():
            raise Stopped("stopped before it started")
        ref = self._torch.from_numpy(VoiceBank.style(pack, len(phonemes)))
        with self._torch.inference_mode():
            audio = self._model(phonemes, ref, speed)  # type: ignore[operator]  # KModel is loaded lazily, typed loosely
        return audio.float().cpu().numpy()
