"""Voxtral service settings (env prefix VOXTRAL_). Speed settings default to the seed's values."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings

CompileMode = Literal["reduce-overhead", "default", "eager"]


class VoxtralSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="VOXTRAL_", env_nested_delimiter="__", extra="ignore", frozen=True)

    port: int = Field(50053, ge=0, le=65535)
    metrics_port: int = Field(9466, ge=0, le=65535, description="Prometheus /metrics over HTTP (slot use, queue "
                              "waits); 0 turns it off.")
    # 30 s of 16 kHz PCM16 is 960 kB; leave room for history text.
    max_message_bytes: int = Field(2 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    model_id: str = Field("mistralai/Voxtral-Mini-3B-2507", min_length=1,
                          description="Hub id (Voxtral Mini or Small) or a local folder.")
    revision: str | None = Field(None, description="Hub revision to pin.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="auto: float16 on CUDA (the seed), float32 on CPU.")
    attention: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    static_cache: bool = Field(True, description="Static KV cache (the seed); needed for compiled decoding.")
    compile_mode: CompileMode = Field(
        "reduce-overhead", description="First torch.compile mode tried; falls back to default, then eager.")
    compile_fullgraph: bool = True
    compile_dynamic: bool = False
    max_context_tokens: int = Field(2048, ge=512, le=131072,
                                    description="Static cache size: prompt plus reply must fit.")
    max_new_tokens: int = Field(25, ge=1, le=4096, description="Seed: 25.")
    min_new_tokens: int = Field(2, ge=0, le=4096, description="Seed: 2.")
    temperature: float = Field(0.05, ge=0.0, le=2.0, description="Seed: 0.05; 0 is greedy.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Seed: 0.9.")
    top_k: int = Field(30, ge=0, le=1000, description="Seed: 30; 0 turns it off.")
    repetition_penalty: float = Field(1.2, ge=1.0, le=2.0, description="Seed: 1.2.")
    max_new_tokens_limit: int = Field(512, ge=1, le=4096, description="Largest max_new_tokens a request may ask.")
    tool_call_max_tokens: int = Field(160, ge=16, le=4096, description="With tools declared, a reply that turns to "
                                      "tool calls may write this many tokens more than max_new_tokens (a call's JSON "
                                      "is longer than a spoken sentence).")
    instructions: str = Field("Answer the speaker briefly, in one or two spoken sentences.",
                              description="Used when a request brings none.")
    transcribe_language: str = Field("en", pattern=r"^[a-z]{2}$")
    transcribe_max_new_tokens: int = Field(128, ge=1, le=4096)
    max_audio_s: float = Field(30.0, gt=0, le=600, description="Longer utterances are INVALID_ARGUMENT.")
    slots: int = Field(1, ge=1, le=64, description="Generations at once (1 per GPU).")
    max_queue: int = Field(8, ge=0, le=10_000, description="Requests waiting for a slot; more: RESOURCE_EXHAUSTED.")
    load_window_s: float = Field(10.0, gt=0, le=600, description="Window of the slot use and queue waits "
                                 "GetLoad and Prometheus report.")
    request_timeout_s: float = Field(30.0, gt=0, le=600, description="Used when the caller sets no deadline.")
    seed: int | None = Field(None, description="Seed sampling for reproducible replies (tests, benchmarks).")

    @field_validator("min_new_tokens")
    @classmethod
    def _min_not_above_max(cls, value: int, info: ValidationInfo) -> int:
        if value > info.data.get("max_new_tokens", value):
            raise ValueError("min_new_tokens must not exceed max_new_tokens")
        return value
