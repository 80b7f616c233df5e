"""Model inputs straight from PCM: mistral-common's chat and transcription encoding plus the
processor's feature extraction. The audio stays in memory (a WAV header on the PCM bytes):
no temporary files, no base64, no URLs."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from services.common.errors import InvalidArgument, echo
from services.common.limits import VOXTRAL_SAMPLE_RATE_HZ
from services.common.tools import ToolCall, ToolSpec, answered, new_call_id

SAMPLE_RATE = VOXTRAL_SAMPLE_RATE_HZ
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # the encoder takes 30 s windows of 3000 mel frames
MEL_FRAMES = 3000


@dataclass(frozen=True)
class Turn:
    role: str  # "user", "assistant" or "tool" (a tool's result, in `text`)
    text: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn that called tools
    tool_call_id: str = ""  # a tool turn: the call it answers


@dataclass(frozen=True)
class ModelInputs:
    tokens: list[int]
    features: np.ndarray | None  # (windows, mel bins, 3000) float32; None: a text-only prompt
    audio_tokens: int
    dropped_turns: int = 0


def check_language(language: str) -> str:
    """INVALID_ARGUMENT unless `language` is an ISO 639-1 code mistral-common accepts (checked with the
    very type its transcription request uses, so the two never disagree)."""
    import pycountry
    from pydantic import TypeAdapter, ValidationError
    from pydantic_extra_types.language_code import LanguageAlpha2

    try:
        TypeAdapter(LanguageAlpha2).validate_python(language)
    except ValidationError:
        codes = sorted(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))
        raise InvalidArgument(f"language={echo(language)} is not an ISO 639-1 code; accepted: "
                              f"{', '.join(codes)}") from None
    return language


def wav_bytes(pcm16: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, pcm16, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# No token is longer than this many characters on average: history beyond the context's tokens times
# this cannot fit, and is dropped (oldest first) before tokenising.
CHARS_PER_TOKEN = 8


def recent(history: Sequence[Turn], chars: int) -> list[Turn]:
    """The newest turns holding at most `chars` characters in all (a turn that does not fit whole ends it)."""
    kept: list[Turn] = []
    for turn in reversed(history):
        chars -= len(turn.text)
        if chars < 0:
            break
        kept.append(turn)
    return kept[::-1]


def normalise_history(history: Sequence[Turn]) -> list[Turn]:
    """Alternating turns starting with the user: empty turns dropped, neighbours of one role joined."""
    turns: list[Turn] = []
    for turn in history:
        text = turn.text.strip()
        if turn.tool_calls or turn.role == "tool":  # a call and its results stay as they are, in order
            if turns:
                turns.append(turn)
            continue
        if not text or turn.role not in ("user", "assistant"):
            continue
        if not turns and turn.role == "assistant":
            continue
        if turns and turns[-1].role == turn.role and not turns[-1].tool_calls:
            turns[-1] = Turn(turn.role, f"{turns[-1].text} {text}")
        else:
            turns.append(Turn(turn.role, text))
    return answered(turns)


def message(turn: Turn) -> object:
    """A turn as mistral-common's message."""
    from mistral_common.protocol.instruct.messages import AssistantMessage, ToolMessage, UserMessage
    from mistral_common.protocol.instruct.tool_calls import FunctionCall
    from mistral_common.protocol.instruct.tool_calls import ToolCall as MistralToolCall

    if turn.role == "tool":
        return ToolMessage(content=turn.text, tool_call_id=turn.tool_call_id)
    if turn.tool_calls:
        return AssistantMessage(content=turn.text or None, tool_calls=[
            MistralToolCall(id=c.call_id, function=FunctionCall(name=c.name, arguments=c.arguments_json()))
            for c in turn.tool_calls])
    return UserMessage(content=turn.text) if turn.role == "user" else AssistantMessage(content=turn.text)


class PromptBuilder:
    def __init__(self, processor: object, audio_token_id: int) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer.tokenizer  # type: ignore[attr-defined]  # mistral-common's, untyped there
        self.feature_extractor = processor.feature_extractor  # type: ignore[attr-defined]  # set by the processor at run time
        self.audio_token_id = audio_token_id

    def chat(self, pcm16: np.ndarray | None, history: Sequence[Turn], instructions: str, max_tokens: int,
             text: str = "", tools: Sequence[ToolSpec] = (), after: Sequence[Turn] = ()) -> ModelInputs:
        """The user's utterance (or, with `pcm16` None, their typed `text`) after the earlier turns, the
        `tools` the model may call declared, and `after` it this reply's calls and their results so far;
        the oldest turns go first if it would not fit."""
        from mistral_common.protocol.instruct.chunk import AudioChunk, TextChunk
        from mistral_common.protocol.instruct.messages import UserMessage
        from mistral_common.protocol.instruct.request import ChatCompletionRequest
        from mistral_common.protocol.instruct.tool_calls import Function, Tool

        audio = None if pcm16 is None else wav_bytes(pcm16)
        # Text that cannot fit is dropped before any tokenising, so a huge history costs no more than a full one.
        kept = recent(history, max_tokens * CHARS_PER_TOKEN)

        def encode(turns: list[Turn]) -> object:
            earlier, pending_user = (turns[:-1], turns[-1].text) if turns and turns[-1].role == "user" \
                else (turns, "")
            messages: list[object] = [message(t) for t in earlier]
            said = " ".join(part for part in (pending_user, text) if part)
            content: list[object] = [TextChunk(text=said)] if said else []
            if audio is not None:
                content.append(AudioChunk(input_audio=audio))
            if instructions:
                content.append(TextChunk(text=instructions))
            messages.append(UserMessage(content=content))
            messages += [message(t) for t in after]
            return self.tokenizer.encode_chat_completion(ChatCompletionRequest(messages=messages, tools=declared))

        declared = [Tool(function=Function(name=t.name, description=t.description, parameters=t.parameters))
                    for t in tools] or None

        # The fewest oldest turns dropped for the prompt to fit: a binary search (log n encodings, not n).
        low, high = 0, len(kept)
        best = None
        while low <= high:
            start = (low + high) // 2
            encoded = encode(normalise_history(kept[start:]))
            if len(encoded.tokens) <= max_tokens:  # type: ignore[attr-defined]  # mistral-common's, untyped
                best, high = (start, encoded), start - 1
            else:
                low = start + 1
        if best is None:
            raise InvalidArgument(f"the prompt needs {len(encoded.tokens)} tokens; "  # type: ignore[attr-defined]
                                  f"the context holds {max_tokens}")
        start, encoded = best
        return self._inputs(encoded, len(history) - len(kept) + start)

    def transcription(self, pcm16: np.ndarray, language: str) -> ModelInputs:
        from mistral_common.protocol.transcription.request import TranscriptionRequest

        encoded = self.tokenizer.encode_transcription(TranscriptionRequest(audio=wav_bytes(pcm16), language=language))
        return self._inputs(encoded, 0)

    def _inputs(self, encoded: object, dropped: int) -> ModelInputs:
        windows = []
        for audio in encoded.audios:  # type: ignore[attr-defined]  # mistral-common's encoding is untyped; already padded to 30 s multiples
            mel = self.feature_extractor(audio.audio_array, sampling_rate=SAMPLE_RATE, return_tensors="np",
                                         padding=True, truncation=False, pad_to_multiple_of=CHUNK_SAMPLES)
            features = mel["input_features"][0]
            windows.append(features.reshape(features.shape[0], -1, MEL_FRAMES).transpose(1, 0, 2))
        tokens = list(encoded.tokens)  # type: ignore[attr-defined]  # mistral-common's encoding is untyped
        features = np.concatenate(windows).astype(np.float32) if windows else None
        return ModelInputs(tokens, features, tokens.count(self.audio_token_id), dropped)

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens))

    @property
    def tool_token(self) -> int:
        """The control token that starts the model's tool calls ([TOOL_CALLS])."""
        return int(self.tokenizer.instruct_tokenizer.tokenizer.get_special_token("[TOOL_CALLS]"))

    def tool_calls(self, tokens: Sequence[int]) -> tuple[list[ToolCall], str]:
        """The calls in generated tokens from [TOOL_CALLS] on, as mistral-common reads them for this
        tokenizer's version, each with a fresh id; ([], why) when they are malformed."""
        from mistral_common.experimental.tools import (  # mistral-common's own reader of generated calls
            InvalidToolCallError,
            _decode_tool_calls,
            _split_content_and_tool_calls,
        )

        _, groups = _split_content_and_tool_calls(list(tokens), self.tool_token)
        try:
            decoded = _decode_tool_calls(groups, self.tokenizer.instruct_tokenizer.tokenizer)
        except (InvalidToolCallError, ValueError) as exc:
            return [], f"the model wrote a malformed tool call: {echo(str(exc))}"
        calls = []
        for call in decoded:
            arguments = call.function.arguments
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError:
                    return [], f"the model's call of {echo(call.function.name)} has arguments that are not JSON"
            if not isinstance(arguments, dict):
                return [], f"the model's call of {echo(call.function.name)} has arguments that are not an object"
            calls.append(ToolCall(new_call_id(), call.function.name, arguments))  # the model's ids may repeat
        if not calls:
            return [], "the model started a tool call and wrote none"
        return calls, ""
