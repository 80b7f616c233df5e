"""A small Voxtral with the real architecture and seeded random weights, saved like a hub
checkpoint (`make tiny-voxtral DIR=...`), so the service, tests and benchmarks run offline
through exactly the production loading code.

The tokenizer is a v7 Tekken file built from the real vocabulary mistral-common ships
(tekken_240911.json), with the 1000 control tokens and the audio section Voxtral needs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from services.voxtral.engine import NOTE_FILE

# A model this project built writes what it is here; the service reports it (GetInfo, logs).
TINY_NOTE = "small random-weight Voxtral built offline: its answers are random English-alphabet tokens"
AUDIO_TOKEN_ID = 24
BEGIN_AUDIO_ID = 25
TRANSCRIBE_ID = 34
NUM_SPECIAL = 1000
# Control tokens by rank, as in Voxtral's own tekken.json; other ranks are fillers.
CONTROL_TOKENS = {
    0: "<unk>", 1: "<s>", 2: "</s>", 3: "[INST]", 4: "[/INST]", 5: "[AVAILABLE_TOOLS]", 6: "[/AVAILABLE_TOOLS]",
    7: "[TOOL_RESULTS]", 8: "[/TOOL_RESULTS]", 9: "[TOOL_CALLS]", 10: "[IMG]", 11: "<pad>", 12: "[IMG_BREAK]",
    13: "[IMG_END]", 14: "[PREFIX]", 15: "[MIDDLE]", 16: "[SUFFIX]", 17: "[SYSTEM_PROMPT]", 18: "[/SYSTEM_PROMPT]",
    19: "[TOOL_CONTENT]", 20: "[ARGS]", 21: "[CALL_ID]", AUDIO_TOKEN_ID: "[AUDIO]", BEGIN_AUDIO_ID: "[BEGIN_AUDIO]",
    TRANSCRIBE_ID: "[TRANSCRIBE]",
}
# A seed whose random weights say something printable, so downstream tests stay stable.
DEFAULT_SEED = 7


def tekken_v7() -> dict[str, object]:
    import mistral_common

    base = json.loads((Path(mistral_common.__file__).parent / "data" / "tekken_240911.json").read_text())
    base["config"] = {**base["config"], "version": "v7", "default_num_special_tokens": NUM_SPECIAL}
    base["special_tokens"] = [
        {"rank": rank, "token_str": CONTROL_TOKENS.get(rank, f"<SPECIAL_{rank}>"), "is_control": True}
        for rank in range(NUM_SPECIAL)
    ]
    base.pop("image", None)
    base["audio"] = {
        "sampling_rate": 16000,
        "frame_rate": 12.5,
        "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
        "chunk_length_s": 30.0,
    }
    return base


def tiny_config():
    from transformers import VoxtralConfig

    return VoxtralConfig(
        audio_config={
            "hidden_size": 16, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_mel_bins": 128, "max_source_positions": 1500,
        },
        text_config={
            "model_type": "llama", "vocab_size": 131072, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
            "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 11, "max_position_embeddings": 4096,
        },
        audio_token_id=AUDIO_TOKEN_ID,
    )


def speakable_token_ids(tekken: dict[str, object]) -> list[int]:
    """Ids of vocabulary tokens that are plain English-alphabet words or sentence punctuation."""
    import base64
    import re

    word = re.compile(rb"^ ?[A-Za-z]{2,}$|^[.,?!]$")
    vocab = tekken["vocab"][: 131072 - NUM_SPECIAL]  # type: ignore[index]  # parsed JSON
    return [NUM_SPECIAL + rank for rank, entry in enumerate(vocab)
            if word.match(base64.b64decode(entry["token_bytes"]))]


def save_processor(folder: Path, tekken: dict[str, object]) -> None:
    """The v7 Tekken file and a VoxtralProcessor over it, as a hub checkpoint has them."""
    from transformers import VoxtralProcessor, WhisperFeatureExtractor
    from transformers.tokenization_mistral_common import MistralCommonBackend

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tekken.json").write_text(json.dumps(tekken))
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=30,
                                       n_fft=400, padding_value=0.0, return_attention_mask=False)
    tokenizer = MistralCommonBackend(tokenizer_path=str(folder / "tekken.json"))
    VoxtralProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)


def build_tiny_voxtral(folder: Path, seed: int = DEFAULT_SEED) -> Path:
    import torch
    from transformers import VoxtralForConditionalGeneration

    tekken = tekken_v7()
    save_processor(folder, tekken)
    torch.manual_seed(seed)
    model = VoxtralForConditionalGeneration(tiny_config())
    # Random weights, but only English-alphabet words can win: the replies stay speakable by an
    # English TTS, so the whole loop (text, clauses, speech) runs on them.
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        keep = torch.zeros(head.shape[0], dtype=torch.bool)
        keep[speakable_token_ids(tekken)] = True
        head[~keep] = 0.0
        head[keep] *= 4.0
    model.generation_config.pad_token_id = 11
    model.save_pretrained(folder, safe_serialization=True)
    (folder / NOTE_FILE).write_text(TINY_NOTE)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    print(build_tiny_voxtral(args.folder, args.seed))


if __name__ == "__main__":
    main()
