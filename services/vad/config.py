"""VAD service settings (env prefix VAD_). Per-stream values are defaults a client may override."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.errors import InvalidArgument
from services.common.limits import END_SILENCE_MS
from services.common.settings import ServerSettings
from services.vad.turn_policy import (
    ASK_AFTER_MS,
    ASK_EVERY_MS,
    ASK_UNTIL_MS,
    FALLBACK_MS,
    PROBABILITY,
    Detector,
    TurnPolicy,
)
from services.vad.voice import Backend

MODELS_DIR = Path(__file__).resolve().parents[2] / "models" / "turn"
_POLICY = TurnPolicy()


class VadSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="VAD_", env_nested_delimiter="__", extra="ignore", frozen=True)

    port: int = Field(50052, ge=0, le=65535)
    # 10 s of 48 kHz PCM16 in one message is plenty; anything larger is refused.
    max_message_bytes: int = Field(1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    max_streams: int = Field(1000, ge=1, le=100_000, description="Concurrent streams; more get RESOURCE_EXHAUSTED.")
    aggressiveness: int = Field(3, ge=0, le=3, description="webrtcvad mode; 3 rejects noise best.")
    frame_ms: Literal[10, 20, 30] = Field(30, description="Analysis frame in ms (webrtc backend).")
    min_speech_ms: int = Field(200, ge=0, le=5000, description="Shorter voiced runs give no events (seed: 200).")
    end_silence_ms: int = END_SILENCE_MS.field(800, "Silence that ends a turn with the silence detector (seed: 800).")
    pause_ms: int = Field(200, ge=1, le=10000, description="Silence that sends a pause hint (silence detector).")
    pre_roll_ms: int = Field(300, ge=0, le=5000, description="Audio kept before the first voiced frame.")
    # End of turn (README: "End of turn").
    detector: Detector = Field(Detector.SMART_TURN, description="smart_turn (model + fallback) or silence (seed).")
    backend: Backend = Field(Backend.WEBRTC, description="Voice detector per frame: webrtc or silero.")
    silero_threshold: float = Field(0.5, gt=0, lt=1, description="Silero probability that counts as voice.")
    snr_db: float = Field(9.0, ge=0, le=40, description="A frame is voice only this far above the noise floor; 0: off.")
    floor_window_ms: int = Field(1500, ge=100, le=10000, description="The noise floor is the quietest frame in this.")
    turn_ask_after_ms: int = ASK_AFTER_MS.field(_POLICY.ask_after_ms, "Silence before the model is first asked.")
    turn_ask_every_ms: int = ASK_EVERY_MS.field(_POLICY.ask_every_ms, "Then it is asked again this often ...")
    turn_ask_until_ms: int = ASK_UNTIL_MS.field(_POLICY.ask_until_ms, "... until the silence is this long.")
    turn_threshold_start: float = PROBABILITY.field(_POLICY.threshold_start, "Probability that ends a turn at once.")
    turn_threshold_end: float = PROBABILITY.field(_POLICY.threshold_end, "... falling to this at the fallback.")
    turn_fallback_ms: int = FALLBACK_MS.field(_POLICY.fallback_ms, "Silence that ends a turn whatever the model says.")
    turn_clean_fallback_ms: int = FALLBACK_MS.field(
        _POLICY.clean_fallback_ms, "Shorter fallback: every answer leaned complete and the silence is clean.")
    turn_lean_complete: float = PROBABILITY.field(_POLICY.lean_complete, "An answer this high leans complete.")
    models_dir: Path = Field(MODELS_DIR, description="Holds smart-turn-v3.2-cpu.onnx, silero_vad.onnx (make models).")
    decision_workers: int = Field(os.cpu_count() or 1, ge=1, le=256, description="Threads running Smart Turn.")
    hint_at_ask: bool = Field(False, description="smart_turn: send a PAUSED hint as a pause is first asked about "
                              "(before the model answers), so a gateway can start its reply speculatively (why it "
                              "is off: docs/decisions.md).")
    # An answer that comes after the fallback is worth nothing: keep the queue to what a few workers clear quickly.
    decision_queue: int = Field(8, ge=1, le=10_000, description="Decisions in flight at most; more are skipped.")

    @model_validator(mode="after")
    def _policy_holds(self) -> VadSettings:
        try:
            self.policy()
        except InvalidArgument as err:
            raise ValueError(str(err)) from None
        return self

    def policy(self) -> TurnPolicy:
        return TurnPolicy(
            ask_after_ms=self.turn_ask_after_ms, ask_every_ms=self.turn_ask_every_ms,
            ask_until_ms=self.turn_ask_until_ms,
            threshold_start=self.turn_threshold_start, threshold_end=self.turn_threshold_end,
            fallback_ms=self.turn_fallback_ms, clean_fallback_ms=self.turn_clean_fallback_ms,
            lean_complete=self.turn_lean_complete,
        )
