"""The Pebble decoder LM, written top to bottom in the order the network is built.

Config -> RMSNorm -> rotary embedding -> KV cache -> attention -> MLP -> block -> model -> causal-LM head.
Math, defaults and state_dict keys match MiniMind-3 (Llama-style field names), so MiniMind checkpoints
load with strict=True.
"""
import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PebbleConfig:
    """Hyper-parameters of a Pebble model; defaults are MiniMind-3's (768 hidden, 8 layers, GQA 8/4).

    A plain dataclass, so that training and chatting never import transformers' model machinery;
    model/hf_pebble.py has the transformers versions of this config and of the model."""

    model_type: ClassVar[str] = "pebble"

    hidden_size: int = 768  # width of the residual stream
    num_hidden_layers: int = 8  # number of decoder blocks
    num_attention_heads: int = 8  # query heads
    num_key_value_heads: int = 4  # key/value heads (GQA); must divide num_attention_heads
    head_dim: Optional[int] = None  # defaults to hidden_size // num_attention_heads
    intermediate_size: Optional[int] = None  # SwiGLU width; defaults to ceil(hidden * pi / 64) * 64
    vocab_size: int = 6400
    rope_theta: float = 1e6
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    qk_norm: bool = True  # RMSNorm over head_dim on q and k (MiniMind-3); False for minimind2-era weights
    hidden_act: str = "silu"  # only silu is implemented; kept for Llama-style configs
    tie_word_embeddings: bool = True  # lm_head shares embed_tokens
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0

    def __post_init__(self):
        self.head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        self.intermediate_size = self.intermediate_size or math.ceil(self.hidden_size * math.pi / 64) * 64
        self.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PebbleConfig":
        """The config of a saved dict; keys it does not know (a transformers config's own) are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def validate(self) -> None:
        """Raise ValueError for shapes the network cannot be built with."""
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.hidden_act != "silu":
            raise ValueError(f"only hidden_act='silu' is implemented, got {self.hidden_act!r}")


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 and cast back to the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # weight * x / sqrt(mean(x^2) + eps), as one fused op in float32 (a few ops instead of eight per call)
        if x.dtype == self.weight.dtype == torch.float32:  # no casts: a decoded token runs 33 norms
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation tables for the given positions (B, T) -> cos and signed sin, two (B, T, 1, head_dim) float32
    tensors that broadcast over heads; signed sin is (-sin, sin) over the two halves (see apply_rope).

    Computed on the fly rather than stored as buffers: buffers that are not saved come back uninitialised
    when transformers builds a model on the meta device, and the work here is tiny next to the matmuls.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=position_ids.device).float() / head_dim)
    angles = position_ids.float()[:, :, None, None] * inv_freq  # (B, T, 1, hd/2)
    sin = angles.sin()
    # the non-interleaved ("rotate_half") layout: dimension i pairs with i + hd/2
    return torch.cat((angles, angles), dim=-1).cos(), torch.cat((-sin, sin), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, T, nh, hd) by the angles in rope_cos_sin's tables (B, T, 1, hd).

    rotate_half(x) * sin = (-x2, x1) * (sin, sin) = (x2, x1) * (-sin, sin): the sign lives in the table, so the
    rotation is one roll and no negation per call, with the same result bit for bit.
    """
    if cos.dtype != x.dtype:
        cos, signed_sin = cos.to(x.dtype), signed_sin.to(x.dtype)
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class KVCache:
    """Per-layer key/value buffers written in place; capacity grows by doubling, so a decoded token
    costs one small copy instead of re-concatenating the whole cache."""

    def __init__(self, num_layers: int, capacity: int = 0):
        self.capacity = capacity
        self.keys: list[Optional[torch.Tensor]] = [None] * num_layers  # each (B, n_kv, capacity, hd)
        self.values: list[Optional[torch.Tensor]] = [None] * num_layers
        self.lengths = [0] * num_layers

    def get_seq_length(self) -> int:
        """Number of positions already cached (layer 0 is written first in a forward)."""
        return self.lengths[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, n_kv, T, hd) for one layer and return views of everything cached so far."""
        start, new = self.lengths[layer], k.shape[2]
        end = start + new
        buf_k = self.keys[layer]
        if buf_k is None or end > buf_k.shape[2]:
            size = max(end, 2 * (buf_k.shape[2] if buf_k is not None else 0), self.capacity)
            self.keys[layer] = self._grow(buf_k, k, size, start)
            self.values[layer] = self._grow(self.values[layer], v, size, start)
        self.keys[layer].narrow(2, start, new).copy_(k)
        self.values[layer].narrow(2, start, new).copy_(v)
        self.lengths[layer] = end
        return self.keys[layer].narrow(2, 0, end), self.values[layer].narrow(2, 0, end)

    @staticmethod
    def _grow(old: Optional[torch.Tensor], like: torch.Tensor, size: int, keep: int) -> torch.Tensor:
        b, h, _, d = like.shape
        new = like.new_empty(b, h, size, d)
        if old is not None:
            new[:, :, :keep] = old[:, :, :keep]
        return new


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor], gqa: bool) -> torch.Tensor:
    """Causal scaled-dot-product attention of q (B, nh, Tq, hd) over k, v (B, nkv, Tk, hd) -> (B, nh, Tq, hd).

    With no mask the queries are the last Tq of the keys: plain causal attention (Tq == 1 needs none).
    enable_gqa lets each group of query heads read its kv head in place: no copy of the (cached) k and v.
    """
    causal = mask is None and q.shape[2] > 1
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A context with autocast switched off on device_type, or a no-op one where it is off already."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


class Attention(nn.Module):
    """Grouped-query causal self-attention with optional q/k RMSNorm and RoPE."""

    def __init__(self, config: PebbleConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv, self.hd = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, self.n_heads * self.hd, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv * self.hd, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.hd, config.hidden_size, bias=False)
        if config.qk_norm:
            self.q_norm = RMSNorm(self.hd, config.rms_norm_eps)
            self.k_norm = RMSNorm(self.hd, config.rms_norm_eps)
        else:
            self.q_norm = self.k_norm = None
        self.float32 = False  # q/k norm, RoPE and attention in float32 even under autocast (model/fast_paths.py)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: Optional[torch.Tensor],
        cache: Optional[KVCache],
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.hd)  # (B, T, nh, hd)
        k = self.k_proj(x).view(B, T, self.n_kv, self.hd)  # (B, T, nkv, hd)
        v = self.v_proj(x).view(B, T, self.n_kv, self.hd)
        if self.float32:
            q, k, v = q.float(), k.float(), v.float()
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, hd)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, nkv, T_past + T, hd)
        with autocast_off(x.device.type) if self.float32 else contextlib.nullcontext():
            y = attend(q, k, v, mask, gqa=self.n_kv != self.n_heads)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.hd).to(x.dtype)  # (B, T, nh * hd)
        return self.o_proj(y)


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: PebbleConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm decoder block: x + attn(norm(x)), then h + mlp(norm(h))."""

    def __init__(self, config: PebbleConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask, cache):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return h + self.mlp(self.post_attention_layernorm(h))


def build_attention_mask(attention_mask: torch.Tensor, q_len: int) -> torch.Tensor:
    """Boolean (B, 1, Tq, Tk) mask from a (B, Tk) padding mask: causal, and pad keys hidden.

    Queries are the last q_len positions. A pad query keeps plain causal attention so that no row is
    fully masked (which would give NaN); its output is never used.
    """
    keep = attention_mask.bool()  # (B, Tk)
    k_len = keep.shape[1]
    q_pos = torch.arange(k_len - q_len, k_len, device=keep.device)
    causal = q_pos[:, None] >= torch.arange(k_len, device=keep.device)[None, :]  # (Tq, Tk)
    pad_query = ~keep[:, -q_len:, None]  # (B, Tq, 1)
    return (causal[None] & (keep[:, None, :] | pad_query)).unsqueeze(1)


class PebbleModel(nn.Module):
    """Embedding, decoder blocks and final norm: tokens (B, T) -> hidden states (B, T, C)."""

    def __init__(self, config: PebbleConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        cache: Optional[KVCache] = None,
    ) -> torch.Tensor:
        B, T = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # no padding: the fast causal path
        if position_ids is None:
            if attention_mask is None:
                position_ids = torch.arange(past, past + T, device=input_ids.device).expand(B, T)
            else:  # left padding: count only real tokens
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
        mask = build_attention_mask(attention_mask, T) if attention_mask is not None else None
        if mask is None and past > 0 and T > 1:  # chunked prefill onto a cache: causal with an offset
            mask = build_attention_mask(torch.ones(B, past + T, dtype=torch.bool, device=input_ids.device), T)
        cos, sin = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta)
        x = self.embed_tokens(input_ids)  # (B, T, C)
        for layer in self.layers:
            x = layer(x, cos, sin, mask, cache)
        return self.norm(x)


@dataclass
class CausalLMOutput:
    """What the model's forward returns (the fields of transformers' CausalLMOutputWithPast that we fill)."""
    loss: Optional[torch.Tensor]  # mean cross-entropy over the labelled positions, or None without labels
    logits: Optional[torch.Tensor]  # (B, T, V), or (N, V) for logits_at, or None for loss_only
    past_key_values: Optional["KVCache"]  # the cache, with use_cache


class PebbleForCausalLM(nn.Module):
    """Pebble decoder with a (tied) language-model head, a shifted cross-entropy loss and `generate`."""

    def __init__(self, config: PebbleConfig):
        super().__init__()
        self.config = config
        self.model = PebbleModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.apply(self._init_weights)
        # model/fast_paths.py may set this to model/fast_decode.bind_forward, which `generate` then uses
        self.bind_decode: Optional[Callable[[nn.Module], Callable]] = None

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, 0.02) for linear and embedding weights; norms start at one."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        past_key_values: Optional[KVCache] = None,
        use_cache: bool = False,
        position_ids: Optional[torch.Tensor] = None,
        logits_to_keep: int = 0,
        loss_only: bool = False,
        logits_at: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> CausalLMOutput:
        """Logits (B, T, V) and, with labels, the mean cross-entropy of logits[:, :-1] against labels[:, 1:]
        (ignore_index -100). logits_to_keep > 0 keeps only the last positions; loss_only skips the logits;
        logits_at, a (B, T) bool mask, gives the logits of the masked positions only, as (N, V) in row-major order."""
        if use_cache and past_key_values is None:
            past_key_values = KVCache(self.config.num_hidden_layers)
        h = self.model(input_ids, attention_mask, position_ids, past_key_values)  # (B, T, C)
        loss = logits = None
        if labels is not None:
            # Only positions with a target reach lm_head and the softmax: in chat data most tokens are prompt.
            targets = labels[:, 1:]
            keep = targets != -100  # (B, T-1)
            target_logits = self.lm_head(h[:, :-1][keep])  # (N, V)
            loss = F.cross_entropy(target_logits.float(), targets[keep], reduction="sum") / keep.sum().clamp(min=1)
        if logits_at is not None:
            logits = self.lm_head(h[logits_at])  # (N, V)
        elif labels is None or not loss_only:
            logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)  # (B, T, V)
        return CausalLMOutput(loss, logits, past_key_values if use_cache else None)

    @torch.inference_mode()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        max_new_tokens: int = 256,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        min_new_tokens: int = 0,
        eos_token_id: Optional[int | list[int]] = None,
        pad_token_id: Optional[int] = None,
        use_cache: bool = True,
        streamer=None,
        on_token: Optional[Callable[[torch.Tensor], None]] = None,
        logits_processor=None,
        **kwargs,
    ) -> torch.Tensor:
        """Decode up to max_new_tokens after left-padded prompts (B, T); returns (B, T + new) token ids.

        Greedy unless do_sample (temperature, top_k, top_p). repetition_penalty and min_new_tokens act on the
        logits first, as transformers' processors of those names do, then `logits_processor` (a callable
        (ids, logits) -> logits, or a list of them, as transformers' LogitsProcessorList); eos_token_id may be one
        id or a list. Rows
        that emit eos are padded with pad_token_id from then on. `streamer` follows transformers' put/end
        protocol; `on_token` gets each new (B,) column. Any other transformers option raises ValueError unless
        it asks for what this loop does anyway (num_beams=1, return_dict_in_generate=False, None, ...).
        """
        check_generate_options(kwargs)
        if repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be positive, got {repetition_penalty}")
        eos = self.config.eos_token_id if eos_token_id is None else eos_token_id
        eos_ids = torch.tensor([eos] if isinstance(eos, int) else list(eos), device=input_ids.device)  # (E,)
        pad = self.config.pad_token_id if pad_token_id is None else pad_token_id
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        B, T = input_ids.shape
        cache = KVCache(self.config.num_hidden_layers, capacity=T + max_new_tokens) if use_cache else None
        padded = not bool(attention_mask.all())
        mask = attention_mask if padded else None  # no padding: the plain causal path throughout
        ids = step_ids = input_ids
        finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
        if streamer is not None:
            streamer.put(input_ids.cpu())
        # A bound forward computes the same with fewer Python calls per token; it is a snapshot, so bound per call.
        step = self.bind_decode(self) if self.bind_decode is not None else self
        for made in range(max_new_tokens):
            logits = step(step_ids, attention_mask=mask, past_key_values=cache, logits_to_keep=1).logits[:, -1]
            logits = logits.float()  # (B, V)
            if repetition_penalty != 1.0:
                logits = penalize_repeats(logits, ids, repetition_penalty)
            if made < min_new_tokens:
                logits[:, eos_ids[eos_ids >= 0]] = float("-inf")
            for process in (logits_processor if isinstance(logits_processor, list) else [logits_processor]):
                if process is not None:
                    logits = process(ids, logits)
            next_tok = sample_next_token(logits, do_sample, temperature, top_k, top_p)  # (B,)
            next_tok = torch.where(finished, torch.full_like(next_tok, pad), next_tok)
            ids = torch.cat([ids, next_tok[:, None]], dim=1)
            if padded:  # finished rows are fed pad tokens as if real; their outputs are never used
                mask = torch.cat([mask, torch.ones_like(next_tok)[:, None]], dim=1)
            step_ids = next_tok[:, None] if cache is not None else ids  # without a cache: the whole prefix again
            if streamer is not None:
                streamer.put(next_tok.cpu())
            if on_token is not None:
                on_token(next_tok)
            finished |= torch.isin(next_tok, eos_ids)
            if bool(finished.all()):
                break
        if streamer is not None:
            streamer.end()
        return ids


# transformers generate options that ask for nothing beyond what our loop does, with the value that says so
NEUTRAL_GENERATE_OPTIONS = {"num_beams": 1, "num_return_sequences": 1, "return_dict_in_generate": False,
                            "output_scores": False, "output_logits": False, "output_attentions": False,
                            "output_hidden_states": False}


def check_generate_options(options: dict) -> None:
    """Raise ValueError naming the first option `generate` would otherwise ignore (None and neutral values pass)."""
    for name, value in options.items():
        if value is None or (name in NEUTRAL_GENERATE_OPTIONS and value == NEUTRAL_GENERATE_OPTIONS[name]):
            continue
        raise ValueError(f"PebbleForCausalLM.generate does not support {name}={value!r}; it decodes greedily or "
                         "by sampling (temperature, top_k, top_p) with repetition_penalty, min_new_tokens, "
                         "eos_token_id and max_new_tokens, so export the model to transformers for other options")


def penalize_repeats(logits: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make every token already in a row (B, T) less likely: its logit divided by penalty when positive,
    multiplied when negative, over all of the row's ids as transformers does (left padding included)."""
    seen = logits.gather(1, ids)  # (B, T)
    return logits.scatter(1, ids, torch.where(seen < 0, seen * penalty, seen / penalty))


def sample_next_token(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int, top_p: float):
    """Pick one token per row from logits (B, V): argmax, or a sample after temperature/top-k/top-p."""
    if not do_sample or temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1).squeeze(-1)
