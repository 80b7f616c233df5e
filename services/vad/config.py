"""VAD service settings (env prefix VAD_). Per-stream values are defaults a client may override."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.limits import END_SILENCE_MS
from services.common.settings import ServerSettings


class VadSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="VAD_", env_nested_delimiter="__", extra="ignore", frozen=True)

    port: int = Field(50052, ge=0, le=65535)
    # 10 s of 48 kHz PCM16 in one message is plenty; anything larger is refused.
    max_message_bytes: int = Field(1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    max_streams: int = Field(1000, ge=1, le=100_000, description="Concurrent streams; more get RESOURCE_EXHAUSTED.")
    aggressiveness: int = Field(3, ge=0, le=3, description="webrtcvad mode; 3 rejects noise best.")
    frame_ms: Literal[10, 20, 30] = Field(30, description="Analysis frame in ms.")
    min_speech_ms: int = Field(200, ge=0, le=5000, description="Shorter voiced runs give no events (seed: 200).")
    end_silence_ms: int = END_SILENCE_MS.field(800, "Silence that ends a turn (seed: 800).")
    pause_ms: int = Field(200, ge=1, le=10000, description="Silence that sends a pause hint.")
    pre_roll_ms: int = Field(300, ge=0, le=5000, description="Audio kept before the first voiced frame.")
