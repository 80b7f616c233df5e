"""Generation parameters: the seed's defaults, per-request overrides, and their bounds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from services.common.errors import InvalidArgument
from services.voxtral.config import VoxtralSettings


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int
    min_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float

    @classmethod
    def defaults(cls, settings: VoxtralSettings) -> GenerationParams:
        return cls(settings.max_new_tokens, settings.min_new_tokens, settings.temperature, settings.top_p,
                   settings.top_k, settings.repetition_penalty)

    def override(self, limit: int, **changes: float | int | None) -> GenerationParams:
        """A copy with the given (non-None) values, checked against their bounds."""
        merged = replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]  # each field is checked below
        problems = []
        if not 1 <= merged.max_new_tokens <= limit:
            problems.append(f"max_new_tokens={merged.max_new_tokens} (use 1 to {limit})")
        if not 0 <= merged.min_new_tokens <= merged.max_new_tokens:
            problems.append(f"min_new_tokens={merged.min_new_tokens} (use 0 to max_new_tokens)")
        if not 0.0 <= merged.temperature <= 2.0:
            problems.append(f"temperature={merged.temperature:g} (use 0 to 2)")
        if not 0.0 < merged.top_p <= 1.0:
            problems.append(f"top_p={merged.top_p:g} (use more than 0, up to 1)")
        if not 0 <= merged.top_k <= 1000:
            problems.append(f"top_k={merged.top_k} (use 0 to 1000)")
        if not 1.0 <= merged.repetition_penalty <= 2.0:
            problems.append(f"repetition_penalty={merged.repetition_penalty:g} (use 1 to 2)")
        if problems:
            raise InvalidArgument("generation settings out of bounds: " + "; ".join(problems))
        return merged

    def generate_kwargs(self) -> dict[str, object]:
        """Keyword arguments for transformers' generate(); temperature 0 means greedy."""
        kwargs: dict[str, object] = asdict(self)
        if self.temperature == 0.0:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, top_k=self.top_k or None)
        return kwargs
