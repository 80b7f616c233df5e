"""A small Voxtral that answers in English (`make models` trains it): the real architecture and
tokenizer, widened a little and trained here on the CPU for a few minutes, so that after the
production chat template (any audio, any short history) it says one spoken English sentence.
Its answers are fluent but not meaningful: it has not learnt to listen. It is saved like a hub
checkpoint and cached by a hash of its recipe, so a second build is a no-op.

Training cost is the 131,072-token output layer, so the loss is a softmax over the few thousand
tokens the corpus uses plus one column standing for all the others (their logits are 0 once the
unused rows of the output layer are zeroed at the end): the same distribution generation sees.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from services.voxtral.engine import NOTE_FILE
from tools.models.corpus import SOURCE, sentences
from tools.models.tiny import AUDIO_TOKEN_ID, save_processor, tekken_v7

RECIPE: dict[str, Any] = {
    "version": 2, "seed": 11, "hidden": 128, "intermediate": 384, "layers": 2, "heads": 4, "kv_heads": 2,
    "steps": 500, "batch": 8, "replies_per_row": 6, "lr": 6e-3, "warmup": 20, "prompts": 64, "max_reply_tokens": 23,
    "logit_scale": 8.0,
}
RECIPE_FILE = "recipe.sha256"
NOTE = ("small Voxtral trained offline on an English dialogue corpus: it answers in fluent English sentences "
        "that do not depend on what was said")
EOS, PAD = 2, 11


def english_config(recipe: dict[str, Any]) -> Any:
    from transformers import VoxtralConfig

    return VoxtralConfig(
        audio_config={"hidden_size": 16, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                      "num_mel_bins": 128, "max_source_positions": 1500},
        text_config={
            "model_type": "llama", "vocab_size": 131072, "hidden_size": recipe["hidden"],
            "intermediate_size": recipe["intermediate"], "num_hidden_layers": recipe["layers"],
            "num_attention_heads": recipe["heads"], "num_key_value_heads": recipe["kv_heads"],
            "head_dim": recipe["hidden"] // recipe["heads"], "bos_token_id": 1, "eos_token_id": EOS,
            "pad_token_id": PAD, "max_position_embeddings": 4096,
        },
        audio_token_id=AUDIO_TOKEN_ID,
    )


def recipe_digest(corpus: list[str], recipe: dict[str, Any] = RECIPE) -> str:
    """Names what would be built: the recipe, the corpus and this file's code."""
    text = json.dumps({"recipe": recipe, "corpus": corpus, "code": Path(__file__).read_text()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def sounds(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Stand-ins for what a user might send (16 kHz PCM16): silence, noise, tones, syllable-like bursts."""
    clips = []
    for n in range(count):
        length = int(rng.uniform(0.3, 8.0) * 16000)
        t = np.arange(length) / 16000
        kind = n % 4
        if kind == 0:
            wave = np.zeros(length)
        elif kind == 1:
            wave = rng.normal(0, rng.uniform(0.001, 0.3), length)
        elif kind == 2:
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 400) * t * (1 + t))
        else:
            envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 6) * t), 0, None)
            wave = envelope * rng.normal(0, rng.uniform(0.05, 0.5), length)
        clips.append((np.clip(wave, -1, 1) * 32767).astype(np.int16))
    return clips


def prompt_pool(folder: Path, corpus: list[str], recipe: dict[str, Any], rng: np.random.Generator) -> list[Any]:
    """Production prompts (PromptBuilder, the default instructions) over varied audio and histories,
    and transcription prompts, which get a sentence too (the user's words in the context then read
    as English, as short as a reply)."""
    from transformers import AutoProcessor

    from services.voxtral.config import VoxtralSettings
    from services.voxtral.prompts import PromptBuilder, Turn

    builder = PromptBuilder(AutoProcessor.from_pretrained(folder), AUDIO_TOKEN_ID)
    instructions = VoxtralSettings.model_fields["instructions"].default
    prompts = []
    for n, clip in enumerate(sounds(rng, recipe["prompts"])):
        history = [Turn(role, corpus[int(rng.integers(len(corpus)))])
                   for _ in range(n % 3) for role in ("user", "assistant")]
        prompts.append(builder.chat(clip, history, instructions, 4096))
        if n % 4 == 0:
            prompts.append(builder.transcription(clip, "en"))
    return prompts


def train(model: Any, prompts: list[Any], replies: list[list[int]], recipe: dict[str, Any],
          rng: np.random.Generator, log: Callable[[str], None]) -> list[int]:
    """Teach the model to follow any prompt with one reply and EOS. Returns the output ids used."""
    import torch

    used = sorted({t for reply in replies for t in reply} | {EOS})
    index = {token: i for i, token in enumerate(used)}
    head = torch.nn.Parameter(model.lm_head.weight.detach()[used].clone())
    # The unused tokens' logits are 0 at generation, so together they weigh log(their count): the
    # used ones must learn logits well above that, which a learnt scale (folded into the head rows
    # at the end) reaches in a few steps instead of hundreds.
    scale = torch.nn.Parameter(torch.tensor(float(recipe["logit_scale"])))
    others = math.log(model.config.text_config.vocab_size - len(used))
    # The audio encoder keeps its random weights (the model is not meant to listen): each prompt's
    # audio embeddings are computed once, and only the language model and the head learn.
    voxtral = model.model
    with torch.no_grad():
        silent = torch.zeros(0, model.config.text_config.hidden_size)  # a text-only prompt's audio embeddings
        heard = [silent if p.features is None else
                 voxtral.get_audio_features(torch.from_numpy(p.features), return_dict=True).pooler_output
                 for p in prompts]
    language = voxtral.language_model
    params = [*language.parameters(), head, scale]
    optimiser = torch.optim.AdamW(params, lr=recipe["lr"], weight_decay=0.0)
    steps, warmup = recipe["steps"], recipe["warmup"]
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / steps))))
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        # Each row: a prompt, then several replies each ending in EOS. The first reply is the case
        # generation meets; the others teach more sentences for the price of one long prompt.
        chosen = [int(rng.integers(len(prompts))) for _ in range(recipe["batch"])]
        picks = [(prompts[n], [t for _ in range(recipe["replies_per_row"])
                               for t in [*replies[int(rng.integers(len(replies)))], EOS]]) for n in chosen]
        rows = [p.tokens + r for p, r in picks]
        width = max(map(len, rows))
        ids = torch.tensor([row + [PAD] * (width - len(row)) for row in rows])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
        embeds = language.get_input_embeddings()(ids)
        embeds = embeds.masked_scatter((ids == AUDIO_TOKEN_ID).unsqueeze(-1), torch.cat([heard[n] for n in chosen]))
        hidden = language(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        # Position j-1 predicts reply token j: only the replies and their EOS are learnt.
        at = [(b, j - 1) for b, (p, r) in enumerate(picks) for j in range(len(p.tokens), len(p.tokens) + len(r))]
        states = hidden[[b for b, _ in at], [j for _, j in at]]
        targets = torch.tensor([index[rows[b][j + 1]] for b, j in at])
        logits = scale * (states @ head.T)
        logits = torch.cat([logits, torch.full((len(at), 1), others)], dim=1)
        loss = torch.nn.functional.cross_entropy(logits, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 250 == 0 or step == steps - 1:
            log(f"step {step:4d}/{steps}  loss {loss.item():.3f}  {time.perf_counter() - started:.0f} s")
    model.eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[used] = scale.detach() * head.detach()
    return used


def build_english_voxtral(folder: Path, log: Callable[[str], None] = print) -> Path:
    """Train and save the model in `folder`, unless the same recipe is already there."""
    corpus = sentences()
    digest = recipe_digest(corpus)
    if (folder / RECIPE_FILE).exists() and (folder / RECIPE_FILE).read_text().strip() == digest:
        return folder
    import torch
    from transformers import VoxtralForConditionalGeneration

    recipe = RECIPE
    torch.manual_seed(recipe["seed"])
    rng = np.random.default_rng(recipe["seed"])
    save_processor(folder, tekken_v7())
    config = english_config(recipe)
    config.save_pretrained(folder)  # the processor finds Voxtral's tokenizer through it
    prompts = prompt_pool(folder, corpus, recipe, rng)
    encode = prompts_tokenizer(folder)
    replies = [tokens for tokens in map(encode, corpus) if len(tokens) <= recipe["max_reply_tokens"]]
    log(f"training the small offline Voxtral once (a few minutes) on {len(replies)} sentences of {SOURCE}")
    model = VoxtralForConditionalGeneration(config)
    used = train(model, prompts, replies, recipe, rng, log)
    model.generation_config.pad_token_id = PAD
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one small shard: a bar says nothing
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "training.json").write_text(json.dumps(
        {"source": SOURCE, "sentences": len(replies), "output_tokens": len(used), "recipe": recipe}, indent=1))
    (folder / NOTE_FILE).write_text(NOTE)
    (folder / RECIPE_FILE).write_text(digest)
    return folder


def prompts_tokenizer(folder: Path) -> Callable[[str], list[int]]:
    """Text to the tokens an assistant message holds (no BOS, no EOS), as mistral-common encodes it."""
    from transformers import AutoProcessor

    tekken = AutoProcessor.from_pretrained(folder).tokenizer.tokenizer.instruct_tokenizer.tokenizer
    return lambda text: list(tekken.encode(text, bos=False, eos=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    print(f"voxtral: {build_english_voxtral(args.folder)} (the small offline model)")


if __name__ == "__main__":
    main()
