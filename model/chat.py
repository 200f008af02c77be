"""Turning chat messages into a reply: render with the tokenizer's chat template, generate, decode.

Each conversation of a batch may name its own adapter: the batch still runs as one generate, with the
adapters routed per row (model_lora.adapters_per_row).
"""
import contextlib
from typing import Callable, Optional, Union

import torch

from model.checkpoint import PebbleError
from model.model_lora import adapters_per_row

Messages = list[dict[str, str]]


def encode_prompt(tokenizer, messages: Messages) -> list[int]:
    """Token ids of messages plus the opening of an assistant turn."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def left_pad(prompts: list[list[int]], pad_id: int,
             device: Optional[Union[str, torch.device]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), both (B, T) with T the longest prompt; shorter prompts are padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


@torch.inference_mode()
def generate_tokens(model, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                    top_p: float = 1.0, eos_token_id: Optional[int] = None, pad_token_id: int = 0,
                    adapters: Optional[list[Optional[str]]] = None, streamer=None,
                    on_token: Optional[Callable[[torch.Tensor], None]] = None) -> torch.Tensor:
    """New token ids (B, new) after the prompts, decoded as one left-padded batch (greedy at temperature 0).

    With adapters, row i uses adapter adapters[i] (None: the base alone) whatever the active set is.
    Rows that ended (eos) are filled with pad_token_id; on_token gets each new (B,) column as it is made.
    """
    if adapters is not None and len(adapters) != len(prompts):
        raise PebbleError(f"got {len(adapters)} adapter names for {len(prompts)} prompts; give one per prompt")
    ids, mask = left_pad(prompts, pad_token_id, next(model.parameters()).device)
    routing = adapters_per_row(model, adapters) if adapters is not None else contextlib.nullcontext()
    with routing:
        out = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                             temperature=temperature, top_p=top_p, eos_token_id=eos_token_id,
                             pad_token_id=pad_token_id, streamer=streamer, on_token=on_token)
    return out[:, ids.shape[1]:]


def generate_replies(model, tokenizer, conversations: list[Messages], max_new_tokens: int = 128,
                     temperature: float = 0.0, top_p: float = 1.0, streamer=None,
                     adapters: Optional[list[Optional[str]]] = None) -> list[str]:
    """One reply per conversation, decoded as a left-padded batch (greedy when temperature is 0); with
    adapters, conversation i is answered by adapter adapters[i] (None: the base alone)."""
    prompts = [encode_prompt(tokenizer, m) for m in conversations]
    new = generate_tokens(model, prompts, max_new_tokens, temperature, top_p, tokenizer.eos_token_id,
                          tokenizer.pad_token_id, adapters=adapters, streamer=streamer)
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def reply(model, tokenizer, prompt: str, system: Optional[str] = None, **kwargs) -> str:
    """The reply to a single user prompt."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return generate_replies(model, tokenizer, [messages], **kwargs)[0]
