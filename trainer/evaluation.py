"""Measuring a model and its adapters: the loss on held-out conversations, and how often greedy replies contain
a word. eval_llm.py, the trainers' probes, scripts/measure_*.py and bench/ share these."""
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from dataset.lm_dataset import IGNORE_INDEX, PadCollator, TokenizedJsonl, check_line
from model.chat import Messages, generate_replies
from model.common import PebbleError
from model.model_lora import ActiveSpec, adapter_active

EXPECT_NEW_TOKENS = 64  # reply length for expect_rate: enough for a self-introduction


@dataclass
class GenOptions:
    """How replies are generated; temperature 0 is greedy (and deterministic)."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0


def as_messages(prompt: Union[str, Messages]) -> Messages:
    """A prompt as a conversation: a string becomes one user turn."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def batched_replies(model, tokenizer, conversations: Sequence[Messages], batch_size: int, gen: GenOptions) -> list[str]:
    """One reply per conversation with the active adapters, generated batch_size at a time."""
    replies: list[str] = []
    for start in range(0, len(conversations), batch_size):
        replies += generate_replies(model, tokenizer, list(conversations[start:start + batch_size]),
                                    gen.max_new_tokens, gen.temperature, gen.top_p)
    return replies


def first_user_turns(path: Path, limit: Optional[int] = None) -> list[Messages]:
    """Each conversation of a JSONL file up to and including its first user turn (the first `limit` of them);
    lines that are no usable conversation (dataset.lm_dataset.check_line) are passed over."""
    prompts = []
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # -sig: a byte-order mark is not text
        for line in f:
            try:
                turns = json.loads(line)
            except ValueError:
                continue
            if check_line(turns, "conversations") is not None:
                continue
            turns = turns["conversations"]
            first = next((i for i, t in enumerate(turns) if t["role"] == "user"), None)
            if first is not None:
                prompts.append([{"role": t["role"], "content": t["content"]} for t in turns[:first + 1]])
            if limit is not None and len(prompts) >= limit:
                break
    return prompts


@torch.inference_mode()
def assistant_token_loss(model, dataset: TokenizedJsonl, batch_size: int = 16) -> tuple[float, int]:
    """(mean cross-entropy per target token, number of target tokens) over the whole dataset: for an
    SFTDataset the assistant tokens, exactly the training loss but weighted by tokens, not by batch.

    Batches group similar lengths and are padded per batch; runs in the caller's autocast, if any, while
    the loss itself is summed in float32."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    collate = PadCollator(pad_id=0, max_seq_len=dataset.max_seq_len)
    order = sorted(range(len(dataset)), key=lambda i: dataset.lengths[i])  # less padding; the sum is unchanged
    total, count = 0.0, 0
    try:
        for start in range(0, len(order), batch_size):
            batch = collate([dataset[i] for i in order[start:start + batch_size]])
            labels = batch["labels"].to(device)
            n = int((labels[:, 1:] != IGNORE_INDEX).sum())
            if n == 0:
                continue
            # Right padding under a causal mask never reaches real tokens: no attention mask, as in training.
            loss = model(batch["input_ids"].to(device), labels=labels, loss_only=True).loss  # mean over the n
            total += loss.float().item() * n
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise PebbleError(f"{dataset.path} has no target tokens within max_seq_len {dataset.max_seq_len}")
    return total / count, count


def expect_rate(model, tokenizer, prompts: Sequence[Union[str, Messages]], word: str, batch_size: int = 16,
                max_new_tokens: int = EXPECT_NEW_TOKENS) -> float:
    """Share of greedy replies (with the active adapters) that contain `word`, ignoring case."""
    if not prompts:
        raise ValueError("expect_rate needs at least one prompt")
    replies = batched_replies(model, tokenizer, [as_messages(p) for p in prompts], batch_size,
                              GenOptions(max_new_tokens))
    return sum(word.lower() in r.lower() for r in replies) / len(replies)


def evaluate(model, tokenizer, dataset: TokenizedJsonl, variants: list[tuple[str, ActiveSpec]],
             word: Optional[str] = None, batch_size: int = 16) -> dict[str, dict]:
    """{label: {"loss", "perplexity", "tokens"[, "expect_rate"]}} for each (label, adapters) variant; with word,
    also the expect_rate of greedy replies to each conversation's first user turn."""
    prompts = first_user_turns(dataset.path) if word else []
    if word and not prompts:
        raise PebbleError(f"{dataset.path} has no user turn to answer, so --expect has nothing to measure")
    results = {}
    for label, spec in variants:
        with adapter_active(model, spec):
            loss, tokens = assistant_token_loss(model, dataset, batch_size)
            results[label] = {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens}
            if word:
                results[label]["expect_rate"] = expect_rate(model, tokenizer, prompts, word, batch_size)
    return results
