"""Voxtral through transformers: loading, the seed's speed settings, and streamed generation.
Blocking calls, run by the service in its slot's worker thread; no gRPC in here."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.tools import ToolCall
from services.voxtral.config import VoxtralSettings
from services.voxtral.generation import GenerationParams
from services.voxtral.prompts import ModelInputs, PromptBuilder

log = logging.getLogger(__name__)

COMPILE_FALLBACKS = {"reduce-overhead": ["reduce-overhead", "default", "eager"], "default": ["default", "eager"],
                     "eager": ["eager"]}


@dataclass(frozen=True)
class GenerationResult:
    text: str
    completion_tokens: int
    prefill_ms: float
    decode_ms: float
    finish_reason: str  # stop, length, cancelled or tool_calls
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_error: str = ""  # the model started a call that cannot be read


class _DeltaStreamer:
    """transformers streamer: hands on the text of each new token as soon as it is whole.

    Only the tokens not yet emitted are decoded (byte-level tokens concatenate exactly), so a
    reply costs one decode per token, not one decode of the whole reply per token."""

    def __init__(self, builder: PromptBuilder, on_delta: Callable[[str], None], eos_ids: set[int],
                 tool_token: int | None = None) -> None:
        self.builder = builder
        self.on_delta = on_delta
        self.eos_ids = eos_ids
        self.tool_token = tool_token  # from this token on the reply is tool calls: never handed on as text
        self.tokens: list[int] = []
        self.calls: list[int] = []  # the tokens from the tool token on
        self.text = ""
        self.first_token_at: float | None = None
        self._emitted = 0  # tokens whose text has been handed on
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt itself
            self._prompt_seen = True
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        new = [t for t in value.reshape(-1).tolist() if t not in self.eos_ids]
        if self.calls or (self.tool_token is not None and self.tool_token in new):
            at = new.index(self.tool_token) if not self.calls else 0
            self.tokens += new[:at]
            self._emit(final=True)
            self.calls += new[at:]
            return
        self.tokens += new
        # Hold back an incomplete multi-byte character until the next token completes it.
        self._emit(final=False)

    def end(self) -> None:
        if not self.calls:
            self._emit(final=True)

    def _emit(self, *, final: bool) -> None:
        pending = self.builder.decode(self.tokens[self._emitted:])
        if pending and (final or not pending.endswith("\ufffd")):
            self._emitted = len(self.tokens)
            self.text += pending
            self.on_delta(pending)


class VoxtralEngine:
    def __init__(self, settings: VoxtralSettings) -> None:
        import torch
        from transformers import AutoProcessor, VoxtralForConditionalGeneration

        self.settings = settings
        self.torch = torch
        self.device = self._device()
        self.dtype = self._dtype()
        started = time.perf_counter()
        revision = settings.revision or "main"  # transformers' own default
        self.processor = AutoProcessor.from_pretrained(settings.model_id, revision=revision)
        model = VoxtralForConditionalGeneration.from_pretrained(
            settings.model_id, revision=revision, dtype=getattr(torch, self.dtype),
            attn_implementation=settings.attention, use_safetensors=True,
        )
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # transformers' .to() stub wants a model
        self.prompts = PromptBuilder(self.processor, self.model.config.audio_token_id)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.kv_cache = "static" if settings.static_cache else "dynamic"
        self.note = model_note(settings.model_id)
        log.info("model loaded", extra={"model_id": settings.model_id, "device": self.device, "dtype": self.dtype,
                                        "note": self.note, "seconds": round(time.perf_counter() - started, 2)})
        self.compile_mode = "eager"

    def _device(self) -> str:
        if self.settings.device != "auto":
            return self.settings.device
        return "cuda" if self.torch.cuda.is_available() else "cpu"

    def _dtype(self) -> str:
        if self.settings.dtype != "auto":
            return self.settings.dtype
        return "float16" if self.device.startswith("cuda") else "float32"

    def _configure(self, mode: str) -> None:
        from transformers import CompileConfig

        config = self.model.generation_config
        if self.kv_cache == "static":
            # One cache size for every prompt: compiled decoding never meets a new shape.
            config.cache_implementation = "static"
            config.max_cache_len = self.settings.max_context_tokens
        if mode == "eager" or self.kv_cache != "static":
            config.disable_compile = True
            config.compile_config = None
            return
        compile_config = CompileConfig(fullgraph=self.settings.compile_fullgraph,
                                       dynamic=self.settings.compile_dynamic, mode=mode)
        # transformers compiles decoding by itself on accelerators only; on a CPU it has to be told.
        # transformers has no public switch for this; its attribute is typed None.
        compile_config._compile_all_devices = not self.device.startswith("cuda")  # type: ignore[assignment]  # noqa: SLF001 (see above)
        config.disable_compile = False
        config.compile_config = compile_config
        if hasattr(self.model, "_compiled_call"):
            del self.model._compiled_call  # noqa: SLF001 (transformers caches the compiled step here)

    def warm_up(self) -> str:
        """Compile (seed mode first, then the fallbacks) and generate once. Returns the mode in effect."""
        pcm = (np.sin(np.arange(SAMPLE_WARMUP) / 16.0) * 3000).astype(np.int16)
        inputs = self.prompts.chat(pcm, [], self.settings.instructions, self.settings.max_context_tokens)
        params = GenerationParams.defaults(self.settings).override(self.settings.max_new_tokens_limit,
                                                                    min_new_tokens=3, max_new_tokens=3)
        for mode in COMPILE_FALLBACKS[self.settings.compile_mode if self.kv_cache == "static" else "eager"]:
            try:
                self._configure(mode)
                started = time.perf_counter()
                self.generate(inputs, params, lambda _: None, threading.Event())
                self.generate(inputs, params, lambda _: None, threading.Event())
                self.compile_mode = mode
                log.info("generation ready", extra={"compile_mode": mode, "kv_cache": self.kv_cache,
                                                    "seconds": round(time.perf_counter() - started, 2)})
                return mode
            except Exception as exc:  # noqa: BLE001 (any compile failure means: try the next mode)
                log.warning("compile mode failed; falling back", extra={"compile_mode": mode, "error": repr(exc)})
        raise RuntimeError("generation failed even in eager mode")

    def generate(self, inputs: ModelInputs, params: GenerationParams, on_delta: Callable[[str], None],
                 stop: threading.Event, deadline: float | None = None, tools: bool = False) -> GenerationResult:
        """Blocking: streams text deltas to on_delta; stops within one decode step once `stop` is set
        or `deadline` (time.monotonic()) passes. With `tools` declared, a reply that turns to tool
        calls hands on no more text from there, and the result holds the calls."""
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch = self.torch

        prompt_length = len(inputs.tokens)
        words_limit = params.max_new_tokens

        class Interrupt(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                expired = deadline is not None and time.monotonic() > deadline
                if expired:
                    stop.set()
                # With tools declared the budget has room for a call; a spoken reply still ends at its own.
                said_enough = tools and not streamer.calls and input_ids.shape[1] - prompt_length >= words_limit
                return torch.full((input_ids.shape[0],), stop.is_set() or said_enough, dtype=torch.bool,
                                  device=input_ids.device)

        ids = torch.tensor([inputs.tokens], device=self.device)
        features = None if inputs.features is None else \
            torch.from_numpy(inputs.features).to(self.device, getattr(torch, self.dtype))
        streamer = _DeltaStreamer(self.prompts, on_delta, self.eos_ids, self.prompts.tool_token if tools else None)
        if self.settings.seed is not None:
            torch.manual_seed(self.settings.seed)
        started = time.perf_counter()
        with torch.inference_mode():
            budget = params.max_new_tokens + (self.settings.tool_call_max_tokens if tools else 0)
            output = self.model.generate(
                input_ids=ids, input_features=features, attention_mask=torch.ones_like(ids), streamer=streamer,
                stopping_criteria=StoppingCriteriaList([Interrupt()]),
                **{**params.generate_kwargs(), "max_new_tokens": budget},
            )
        ended = time.perf_counter()
        new = output[0, ids.shape[1]:].tolist()
        first = streamer.first_token_at or ended
        calls: list[ToolCall] = []
        error = ""
        if stop.is_set():
            reason = "cancelled"
        elif streamer.calls:
            reason = "tool_calls"
            calls, error = self.prompts.tool_calls(streamer.calls)
        elif new and new[-1] in self.eos_ids:
            reason = "stop"
        else:
            reason = "length"
        result = GenerationResult(streamer.text, len([t for t in new if t not in self.eos_ids]),
                                  (first - started) * 1000, (ended - first) * 1000, reason, tuple(calls), error)
        log.info("generation finished", extra={"completion_tokens": result.completion_tokens,
                                               "finish_reason": reason, "decode_ms": round(result.decode_ms, 1)})
        return result


SAMPLE_WARMUP = 16000
# A model folder this project built says what it is in this file (tools/models writes it).
NOTE_FILE = "model_note.txt"


def model_note(model_id: str) -> str:
    """What a model folder this project built says it is ("" for a hub id or a real checkpoint)."""
    path = Path(model_id) / NOTE_FILE
    return path.read_text().strip() if path.is_file() else ""
