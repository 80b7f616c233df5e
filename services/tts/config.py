"""TTS service settings (env prefix TTS_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.limits import SPEED
from services.common.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]


class TtsSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", env_nested_delimiter="__", extra="ignore", frozen=True)

    port: int = Field(50054, ge=0, le=65535)
    metrics_port: int = Field(9465, ge=0, le=65535, description="Prometheus /metrics over HTTP (slot use, queue "
                              "waits: what the HPA scales on); 0 turns it off.")
    backend: Literal["auto", "onnx", "kokoro"] = Field(
        "auto", description="auto: kokoro (PyTorch) on a GPU, onnx (onnxruntime) on a CPU.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    models_dir: Path = Field(ROOT / "models" / "kokoro", description="Where `make models` put the Kokoro files.")
    onnx_model: str = "kokoro-v1.0.int8.onnx"
    voices_file: str = "voices-v1.0.npz"
    torch_weights: str = Field("kokoro-v1_0.pth", description="Weights of the kokoro backend, in models_dir.")
    onnx_threads: int = Field(0, ge=0, le=256, description="onnxruntime intra-op threads; 0 = runtime default.")
    onnx_spinning: bool = Field(False, description="Idle intra-op threads spin (onnxruntime's own default); off "
                                "leaves their cores to the other services on a CPU host.")
    default_voice: str = Field("af_heart", min_length=1, description="Seed: af_heart.")
    default_speed: float = SPEED.field(1.0, "Seed: 1.0.")
    timeout_s: float = Field(3.0, gt=0, le=120, description="Bound on one clause's synthesis once it runs (seed: "
                             "3 s); past it the work is stopped and the call is DEADLINE_EXCEEDED. A wait for the "
                             "slot is bounded by the call's own deadline, or by need time plus this when it has "
                             "none.")
    piece_share: float = Field(0.6, gt=0, le=1, description="Share of timeout_s one piece of synthesis is sized "
                               "to take, from the engine's measured cost: a longer clause is cut at words.")
    max_clause_phonemes: int = Field(256, ge=24, le=510, description="Most phonemes synthesised in one piece, "
                                     "whatever the measured speed.")
    load_window_s: float = Field(10.0, gt=0, le=600, description="Window of the slot use and queue waits "
                                 "GetLoad and Prometheus report.")
    min_chars: int = Field(2, ge=0, le=100, description="Shorter replies are skipped: no audio, no error (seed: 2).")
    max_text_chars: int = Field(2000, ge=1, le=100_000, description="Longer text is INVALID_ARGUMENT.")
    emotional: bool = Field(False, description="Pick voice and speed from the text (seed: off).")
    mood_voices: dict[str, str] = Field(default_factory=dict, description="Mood -> voice, for emotional mode.")
    lead_ms: int = Field(20, ge=0, le=1000, description="Silence kept before a clause's first audible sample "
                         "(Kokoro pads ~350 ms).")
    tail_ms: int = Field(40, ge=0, le=1000, description="Audio kept after a clause's last audible sample: its "
                         "decay (Kokoro pads ~500 ms).")
    clause_pause_ms: int = Field(220, ge=0, le=2000, description="Silence a listener hears between two clauses "
                                 "of one reply (a natural comma is ~170 ms); a request that `more_follows` ends "
                                 "with it.")
    slots: int = Field(1, ge=1, le=64, description="Requests synthesised at once.")
    max_queue: int = Field(16, ge=0, le=10_000, description="Requests waiting for a slot; more: RESOURCE_EXHAUSTED.")

    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        return "kokoro" if self.resolved_device() == "cuda" else "onnx"

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"
