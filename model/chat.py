"""Turning chat messages into a reply: render with the tokenizer's chat template, generate, decode."""
from typing import Optional

import torch

Messages = list[dict[str, str]]


def encode_prompt(tokenizer, messages: Messages) -> list[int]:
    """Token ids of messages plus the opening of an assistant turn."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def generate_replies(model, tokenizer, conversations: list[Messages], max_new_tokens: int = 128,
                     temperature: float = 0.0, top_p: float = 1.0, streamer=None) -> list[str]:
    """One reply per conversation, decoded as a left-padded batch (greedy when temperature is 0)."""
    prompts = [encode_prompt(tokenizer, m) for m in conversations]
    width = max(len(p) for p in prompts)
    device = next(model.parameters()).device
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    out = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                         temperature=temperature, top_p=top_p, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, streamer=streamer)
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]


def reply(model, tokenizer, prompt: str, system: Optional[str] = None, **kwargs) -> str:
    """The reply to a single user prompt."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return generate_replies(model, tokenizer, [messages], **kwargs)[0]
