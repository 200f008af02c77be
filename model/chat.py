"""Turning chat messages into a reply: render with the tokenizer's chat template, generate, decode.

Each conversation of a batch may name its own adapter: the batch still runs as one generate, with the
adapters routed per row (model_lora.adapters_per_row).

Message content is always plain text: a control token's text inside it (say "<|im_end|>") becomes ordinary
tokens, so a message cannot close its own turn or open another; only the template's markers are control tokens.
Replies are made of whole characters: generation only picks tokens whose bytes continue the reply as valid UTF-8
(WholeCharacters), and decoding holds back the bytes of a character still being written while streaming.
"""
import codecs
import contextlib
import functools
import re
import uuid
from typing import Callable, Optional, Union

import torch

from model.common import PebbleError
from model.lora_routing import adapters_per_row

Messages = list[dict[str, str]]

# Below this temperature sampling is argmax in all but name (a logit gap of 1e-3 already gives odds of e^-100),
# and dividing the logits by it risks overflowing to inf and then NaN probabilities; so it decodes greedily.
MIN_TEMPERATURE = 1e-5


def sampling_settings(temperature: float, top_p: float) -> tuple[float, float]:
    """(temperature, top_p) as generation applies them: every greedy request, temperature below
    MIN_TEMPERATURE included, is (0.0, 1.0)."""
    return (float(temperature), float(top_p)) if temperature >= MIN_TEMPERATURE else (0.0, 1.0)


# ---------------------------------------------------------------- messages -> token ids

def is_text(value: str) -> bool:
    """Whether a string is text that UTF-8 can hold: JSON may escape half of a surrogate pair (\\ud800) alone."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def control_tokens(tokenizer) -> list[str]:
    """The text of every special token, longest first (so a pattern built from them matches the longest)."""
    return sorted(set(tokenizer.all_special_tokens), key=len, reverse=True)


def plain_ids(tokenizer, text: str, specials: list[str]) -> list[int]:
    """Token ids of text with any control-token text in it tokenized as ordinary characters.

    Each occurrence is cut after its first character, so no piece holds a whole control token; text without
    one is tokenized in one piece, exactly as the tokenizer would."""
    cuts = sorted({m.start() + 1 for s in specials for m in re.finditer(f"(?={re.escape(s)})", text)})
    pieces = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)]) if b > a]
    if not pieces:
        return []
    return [i for ids in tokenizer(pieces, add_special_tokens=False)["input_ids"] for i in ids]


def _encode_with_plain_content(tokenizer, messages: Messages, add_generation_prompt: bool,
                               specials: list[str]) -> list[int]:
    """encode_chats for one conversation whose content holds control-token text: the template is rendered
    around markers to tell its own text from the messages', and only its own markers become control tokens."""
    tag = f"\x1e{uuid.uuid4().hex}\x1e"
    marked = [{**m, "content": f"{tag}{i}{tag}"} for i, m in enumerate(messages)]
    rendered = tokenizer.apply_chat_template(marked, tokenize=False, add_generation_prompt=add_generation_prompt)
    parts = re.split(f"{tag}(\\d+){tag}", rendered)  # template, message index, template, ..., template
    pieces = [(messages[int(p)]["content"] if k % 2 else p, k % 2 == 0) for k, p in enumerate(parts)]
    real = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    if "".join(text for text, _ in pieces) != real:
        raise PebbleError("a message holds the text of a control token (such as <|im_end|>), and this tokenizer's "
                          "chat template rewrites message content, so it cannot be kept as plain text; remove it")
    pattern = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
    ids: list[int] = []
    run = ""  # plain text since the last template marker: tokenized as one piece, as the tokenizer would
    for text, is_template in pieces:
        if not is_template:
            run += text
            continue
        for k, chunk in enumerate(pattern.split(text)):  # plain, marker, plain, ...
            if k % 2 == 0:
                run += chunk
            else:
                ids += plain_ids(tokenizer, run, specials) + [tokenizer.convert_tokens_to_ids(chunk)]
                run = ""
    return ids + plain_ids(tokenizer, run, specials)


def encode_chats(tokenizer, conversations: list[Messages], add_generation_prompt: bool = False) -> list[list[int]]:
    """Token ids of each conversation in the tokenizer's chat template (plus the opening of an assistant turn
    if add_generation_prompt); control-token text inside a message's content stays plain text.

    Conversations without such text are tokenized exactly as tokenizing the rendered template would."""
    if not all(is_text(m["content"]) for conversation in conversations for m in conversation):
        raise PebbleError("a message holds half of a surrogate pair (such as \\ud800), which is not text; fix it")
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=add_generation_prompt)
             for c in conversations]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    specials = control_tokens(tokenizer)
    for i, conversation in enumerate(conversations):
        if any(s in m["content"] for m in conversation for s in specials):
            ids[i] = _encode_with_plain_content(tokenizer, conversation, add_generation_prompt, specials)
    return ids


def encode_prompt(tokenizer, messages: Messages) -> list[int]:
    """Token ids of messages plus the opening of an assistant turn."""
    return encode_chats(tokenizer, [messages], add_generation_prompt=True)[0]


# ---------------------------------------------------------------- token ids -> text

def _byte_level_chars() -> dict[str, int]:
    """Byte-level BPE's stand-in character for each byte -> the byte: printable Latin-1 bytes stand for
    themselves; the others (controls, space, NBSP, soft hyphen) take U+0100, U+0101, ... in byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(0x100 + n): b for n, b in enumerate(others)}}


def token_bytes(tokenizer) -> list[bytes]:
    """The bytes each token id stands for; b"" for special tokens (a reply's text leaves them out)."""
    chars = _byte_level_chars()
    special = set(tokenizer.all_special_ids)
    table = []
    for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if i in special or token is None:
            table.append(b"")
        elif all(c in chars for c in token):
            table.append(bytes(chars[c] for c in token))
        else:  # not a byte-level token: its own decoding
            table.append(tokenizer.decode([i]).encode("utf-8"))
    return table


class TextStream:
    """The text of token ids as they arrive, whole characters only: push returns the characters a token
    completes (bytes of an unfinished character wait for the next token; bytes that can never form one are
    dropped), finish drops an unfinished tail."""

    def __init__(self, table: list[bytes]):
        self.table = table  # token_bytes(tokenizer)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")

    def push(self, token: int) -> str:
        """Add a token; the text it completes (possibly empty)."""
        return self.decoder.decode(self.table[token])

    def finish(self) -> str:
        """The end of the reply: drop the bytes of a character that never completed."""
        return self.decoder.decode(b"", final=True)


# UTF-8 as a small automaton: a state is (bytes still to come, lowest and highest allowed value of the next
# one). A lead byte names how many continuation bytes follow; for E0, ED, F0 and F4 the first of them has a narrower
# range (no overlong forms, no surrogates, nothing above U+10FFFF). C0, C1 and F5-FF never occur.
UTF8_START = (0, 0x00, 0x7F)


def utf8_step(state: tuple[int, int, int], byte: int) -> Optional[tuple[int, int, int]]:
    """The state after one more byte, or None where that byte makes the text invalid UTF-8."""
    left, low, high = state
    if left:
        if not low <= byte <= high:
            return None
        return (left - 1, 0x80, 0xBF) if left > 1 else UTF8_START
    if byte <= 0x7F:
        return UTF8_START
    if 0xC2 <= byte <= 0xDF:
        return (1, 0x80, 0xBF)
    if 0xE0 <= byte <= 0xEF:
        return (2, *{0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F)}.get(byte, (0x80, 0xBF)))
    if 0xF0 <= byte <= 0xF4:
        return (3, *{0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}.get(byte, (0x80, 0xBF)))
    return None


@functools.lru_cache(maxsize=4)
def utf8_fit_tables(table: tuple[bytes, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(allowed, after), both (S, V) over the UTF-8 states S that tokens can reach: whether token v may follow
    state s, and the state it leads to. Special tokens (no bytes) fit only between characters."""
    states, allowed, after = [UTF8_START], [], []  # states are numbered as tokens reach them
    index = {UTF8_START: 0}
    for start in states:  # the list grows while it is walked
        fits, goes = [], []
        for data in table:
            state: Optional[tuple[int, int, int]] = start
            for byte in data:
                state = utf8_step(state, byte)
                if state is None:
                    break
            if not data and start != UTF8_START:
                state = None  # ending (or any special token) in the middle of a character
            if state is not None and state not in index:
                index[state] = len(states)
                states.append(state)
            fits.append(state is not None)
            goes.append(index.get(state, 0))
        allowed.append(fits)
        after.append(goes)
    return torch.tensor(allowed), torch.tensor(after)


class WholeCharacters:
    """A logits processor for generate that keeps every reply valid UTF-8: at each step a row may only pick a
    token whose bytes continue its text validly, and may only end (or emit any other special token) between
    characters. So a reply never holds a byte sequence that decodes to U+FFFD. Each row's UTF-8 state follows
    its tokens: generate calls this once per step, before choosing."""

    def __init__(self, table: list[bytes]):
        allowed, self.after = utf8_fit_tables(tuple(table))  # (S, V) each
        self.bias = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))  # (S, V): 0 or -inf
        self.state: Optional[torch.Tensor] = None  # (B,) each row's state

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """ids (B, T) so far, logits (B, V) for the next token -> logits with the tokens that do not fit at -inf."""
        if self.bias.device != logits.device:
            self.bias, self.after = self.bias.to(logits.device), self.after.to(logits.device)
        if self.state is None:  # the first step: every reply starts between characters
            self.state = torch.zeros(ids.shape[0], dtype=torch.long, device=logits.device)
        else:
            self.state = self.after[self.state, ids[:, -1]]  # the token chosen at the previous step
        bias = self.bias[self.state]  # (B, V)
        if bias.shape[1] == logits.shape[1]:
            return logits + bias
        width = min(bias.shape[1], logits.shape[1])  # a model with more (or fewer) rows than the tokenizer
        return torch.cat([logits[:, :width] + bias[:, :width], logits[:, width:]], dim=1)


def decode_reply(table: list[bytes], ids: list[int]) -> str:
    """The text of a reply's token ids (table: token_bytes(tokenizer)), as TextStream shows it."""
    stream = TextStream(table)
    return "".join(stream.push(i) for i in ids) + stream.finish()


# ---------------------------------------------------------------- generating

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
                    on_token: Optional[Callable[[torch.Tensor], None]] = None,
                    token_table: Optional[list[bytes]] = None) -> torch.Tensor:
    """New token ids (B, new) after the prompts, decoded as one left-padded batch (greedy at temperature 0,
    and below MIN_TEMPERATURE). With token_table (token_bytes(tokenizer)) every reply is valid UTF-8
    (WholeCharacters): the model's likeliest token that fits is chosen where its likeliest does not.

    With adapters, row i uses adapter adapters[i] (None: the base alone) whatever the active set is.
    Rows that ended (eos) are filled with pad_token_id; on_token gets each new (B,) column as it is made.
    No more tokens are made than the model has positions left after the longest prompt.
    """
    if adapters is not None and len(adapters) != len(prompts):
        raise PebbleError(f"got {len(adapters)} adapter names for {len(prompts)} prompts; give one per prompt")
    ids, mask = left_pad(prompts, pad_token_id, next(model.parameters()).device)
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None:
        if ids.shape[1] >= positions:
            raise PebbleError(f"the prompt takes {ids.shape[1]} tokens and the model has {positions} positions; "
                              "shorten it")
        max_new_tokens = min(max_new_tokens, positions - ids.shape[1])  # the KV cache is sized by this
    temperature, top_p = sampling_settings(temperature, top_p)
    routing = adapters_per_row(model, adapters) if adapters is not None else contextlib.nullcontext()
    with routing:
        out = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                             temperature=temperature, top_p=top_p, eos_token_id=eos_token_id,
                             pad_token_id=pad_token_id, streamer=streamer, on_token=on_token,
                             logits_processor=None if token_table is None else [WholeCharacters(token_table)])
    return out[:, ids.shape[1]:]


def generate_replies(model, tokenizer, conversations: list[Messages], max_new_tokens: int = 128,
                     temperature: float = 0.0, top_p: float = 1.0, streamer=None,
                     adapters: Optional[list[Optional[str]]] = None) -> list[str]:
    """One reply per conversation, decoded as a left-padded batch (greedy when temperature is 0); with
    adapters, conversation i is answered by adapter adapters[i] (None: the base alone)."""
    prompts = encode_chats(tokenizer, conversations, add_generation_prompt=True)
    table = token_bytes(tokenizer)
    new = generate_tokens(model, prompts, max_new_tokens, temperature, top_p, tokenizer.eos_token_id,
                          tokenizer.pad_token_id, adapters=adapters, streamer=streamer, token_table=table)
    return [decode_reply(table, row).strip() for row in new.tolist()]


def reply(model, tokenizer, prompt: str, system: Optional[str] = None, **kwargs) -> str:
    """The reply to a single user prompt."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return generate_replies(model, tokenizer, [messages], **kwargs)[0]
