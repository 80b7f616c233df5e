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
from tools.models.tool_turns import ToolExample, examples

RECIPE: dict[str, Any] = {
    "version": 3, "seed": 11, "hidden": 128, "intermediate": 384, "layers": 2, "heads": 4, "kv_heads": 2,
    "steps": 3000, "batch": 8, "replies_per_row": 6, "lr": 6e-3, "warmup": 20, "prompts": 64, "max_reply_tokens": 23,
    "logit_scale": 8.0, "tool_examples": 400, "tool_rows": 5, "decision_weight": 4.0,
}
RECIPE_FILE = "recipe.sha256"
NOTE = ("small Voxtral trained offline on an English dialogue corpus: it answers in fluent English sentences "
        "that do not depend on what was said, and calls a declared tool (get_time, get_weather, roll_dice) when a "
        "typed question asks for it, then says the result")
EOS, PAD = 2, 11
# What the tool rows of a batch teach, in proportion: saying a result back is the hardest lesson.
TOOL_ROW_SHARE = {"answer": 0.4, "call": 0.3, "none": 0.3}


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
    """Names what would be built: the recipe, the corpus and the code that trains it."""
    code = Path(__file__).read_text() + (Path(__file__).parent / "tool_turns.py").read_text()
    text = json.dumps({"recipe": recipe, "corpus": corpus, "code": code}, sort_keys=True)
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
          rng: np.random.Generator, log: Callable[[str], None], tools: list[ToolExample] | None = None) -> list[int]:
    """Teach the model to follow any prompt with one reply and EOS, and each tool example's prompt
    with its target (`tool_rows` of each batch). Returns the output ids used."""
    import torch

    tools = tools or []
    used = sorted({t for reply in replies for t in reply} | {t for e in tools for t in e.target} | {EOS})
    index = {token: i for i, token in enumerate(used)}
    head = torch.nn.Parameter(model.lm_head.weight.detach()[used].clone())
    # The unused tokens' logits are 0 at generation, so together they weigh log(their count): the
    # used ones must learn logits well above that, which a learnt scale (folded into the head rows
    # at the end) reaches in a few steps instead of hundreds.
    scale = torch.nn.Parameter(torch.tensor(float(recipe["logit_scale"])))
    others = math.log(model.config.text_config.vocab_size - len(used))
    # The audio encoder keeps its random weights (the model is not meant to listen): each prompt's
    # audio embeddings are computed once, and only the language model and the head learn.
    heard = audio_embeddings(model, [*prompts, *(e.prompt for e in tools)])  # the tool examples: typed, none
    language = model.model.language_model
    optimiser, schedule = optimiser_for([*language.parameters(), head, scale], recipe)
    steps = recipe["steps"]
    by_kind = {kind: [n for n, e in enumerate(tools) if e.kind == kind] for kind in TOOL_ROW_SHARE}
    calls = index[tools[by_kind["call"][0]].target[0]] if tools else -1  # [TOOL_CALLS]
    seen: dict[str, list[float]] = {}
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        chosen, picks, kinds = batch(prompts, replies, tools, by_kind, recipe, rng)
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
        # Every row weighs the same, whatever its length: a tool row's few tokens (the decision to
        # call, the copied result) would otherwise drown in the plain rows' long runs of sentences.
        # A tool row's first token is that decision: it weighs `decision_weight` tokens.
        first = [k for k, (b, j) in enumerate(at) if kinds[b] != "plain" and j == len(picks[b][0].tokens) - 1]
        weights = torch.ones(len(at)).index_fill_(0, torch.tensor(first, dtype=torch.long), recipe["decision_weight"])
        row_of = torch.tensor([b for b, _ in at])
        weights = weights / torch.zeros(len(rows)).index_add_(0, row_of, weights)[row_of]
        token_losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        loss = (weights * token_losses).sum() / len(rows)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            per_row = torch.zeros(len(rows)).index_add_(0, row_of, weights * token_losses)
            # Whether each tool row's first token calls, or not, as it should (the words may differ).
            right = ((logits[first].argmax(1) == calls) == (targets[first] == calls)).tolist()
        for kind, value in [*zip(kinds, per_row.tolist(), strict=True),
                            *((f"{kinds[at[k][0]]}-decided", float(ok)) for k, ok in zip(first, right, strict=True))]:
            seen.setdefault(kind, []).append(value)
        if step % 250 == 0 or step == steps - 1:
            report(seen, f"step {step:4d}/{steps}", started, log)
    model.eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[used] = scale.detach() * head.detach()
    return used


def optimiser_for(params: list[Any], recipe: dict[str, Any]) -> tuple[Any, Any]:
    """AdamW with a linear warmup, then a cosine down to 0 at the last step."""
    import torch

    optimiser = torch.optim.AdamW(params, lr=recipe["lr"], weight_decay=0.0)
    steps, warmup = recipe["steps"], recipe["warmup"]
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / steps))))
    return optimiser, schedule


def report(seen: dict[str, list[float]], where: str, started: float, log: Callable[[str], None]) -> None:
    """Log each row kind's mean loss (and each tool kind's share of right decisions) since the last report."""
    losses = "  ".join(f"{kind} {np.mean(values):.3f}" for kind, values in sorted(seen.items()))
    log(f"{where}  loss {losses}  {time.perf_counter() - started:.0f} s")
    seen.clear()


def audio_embeddings(model: Any, prompts: list[Any]) -> list[Any]:
    """Each prompt's audio embeddings (none for a typed one)."""
    import torch

    with torch.no_grad():
        silent = torch.zeros(0, model.config.text_config.hidden_size)
        return [silent if p.features is None else
                model.model.get_audio_features(torch.from_numpy(p.features), return_dict=True).pooler_output
                for p in prompts]


def batch(prompts: list[Any], replies: list[list[int]], tools: list[ToolExample], by_kind: dict[str, list[int]],
          recipe: dict[str, Any], rng: np.random.Generator) -> tuple[list[int], list[tuple[Any, list[int]]], list[str]]:
    """One step's rows: which prompt each uses (tool examples after `prompts`), the prompt and its
    target, and the row's kind ("plain" or a tool example's)."""
    # Each plain row: a prompt, then several replies each ending in EOS. The first reply is the case
    # generation meets; the others teach more sentences for the price of one long prompt.
    plain_rows = recipe["batch"] - (recipe["tool_rows"] if tools else 0)
    chosen = [int(rng.integers(len(prompts))) for _ in range(plain_rows)]
    picks = [(prompts[n], [t for _ in range(recipe["replies_per_row"])
                           for t in [*replies[int(rng.integers(len(replies)))], EOS]]) for n in chosen]
    kinds = ["plain"] * plain_rows
    if tools:
        share = np.array(list(TOOL_ROW_SHARE.values()))
        for kind in rng.choice(list(TOOL_ROW_SHARE), size=recipe["tool_rows"], p=share / share.sum()):
            n = by_kind[kind][int(rng.integers(len(by_kind[kind])))]
            chosen.append(len(prompts) + n)
            picks.append((tools[n].prompt, tools[n].target))
            kinds.append(str(kind))
    return chosen, picks, kinds


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
    tools = tool_examples(folder, corpus, encode, recipe, rng)
    log(f"training the small offline Voxtral once (a few minutes) on {len(replies)} sentences of {SOURCE} "
        f"and {len(tools)} tool turns")
    model = VoxtralForConditionalGeneration(config)
    used = train(model, prompts, replies, recipe, rng, log, tools)
    model.generation_config.pad_token_id = PAD
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one small shard: a bar says nothing
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "training.json").write_text(json.dumps(
        {"source": SOURCE, "sentences": len(replies), "output_tokens": len(used), "recipe": recipe}, indent=1))
    (folder / NOTE_FILE).write_text(NOTE)
    (folder / RECIPE_FILE).write_text(digest)
    return folder


def tool_examples(folder: Path, corpus: list[str], encode: Callable[[str], list[int]], recipe: dict[str, Any],
                  rng: np.random.Generator) -> list[ToolExample]:
    from transformers import AutoProcessor

    from services.voxtral.config import VoxtralSettings
    from services.voxtral.prompts import PromptBuilder

    builder = PromptBuilder(AutoProcessor.from_pretrained(folder), AUDIO_TOKEN_ID)
    instructions = VoxtralSettings.model_fields["instructions"].default
    return examples(builder, instructions, corpus, encode, EOS, rng, recipe["tool_examples"])


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
