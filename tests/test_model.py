"""The decoder against reference formulations: attention, GQA, RoPE, KV cache, loss, weight I/O."""
import math

import pytest
import torch
import torch.nn.functional as F

from model import KVCache, PebbleConfig, PebbleForCausalLM, hf_pebble
from model.checkpoint import load_model, save_model
from model.common import PebbleError
from model.fast_decode import bind_forward
from model.loading import weight_path
from model.model_pebble import apply_rope, rope_cos_sin

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=97)


def tiny_model(seed: int = 0, **overrides) -> PebbleForCausalLM:
    torch.manual_seed(seed)
    return PebbleForCausalLM(PebbleConfig(**{**TINY, **overrides})).eval()


def reference_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """Causal GQA written out with explicit softmax, from the module's own weights."""
    B, T, _ = x.shape
    nh, nkv, hd = attn.n_heads, attn.n_kv, attn.hd
    q = (x @ attn.q_proj.weight.T).view(B, T, nh, hd)
    k = (x @ attn.k_proj.weight.T).view(B, T, nkv, hd)
    v = (x @ attn.v_proj.weight.T).view(B, T, nkv, hd)
    if attn.q_norm is not None:
        q, k = attn.q_norm(q), attn.k_norm(k)
    cos, sin = rope_cos_sin(torch.arange(T).expand(B, T), hd, 1e6)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = torch.zeros(B, T, nh, hd)
    for h in range(nh):
        kv = h // (nh // nkv)  # query head h reads kv head h // group
        scores = q[:, :, h] @ k[:, :, kv].transpose(1, 2) / math.sqrt(hd)  # (B, T, T)
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        out[:, :, h] = scores.softmax(-1) @ v[:, :, kv]
    return out.reshape(B, T, nh * hd) @ attn.o_proj.weight.T


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_sdpa_attention_matches_explicit_reference(kv_heads):
    model = tiny_model(num_key_value_heads=kv_heads)
    attn = model.model.layers[0].self_attn
    x = torch.randn(2, 7, 64)
    T = x.shape[1]
    cos, sin = rope_cos_sin(torch.arange(T).expand(2, T), attn.hd, 1e6)
    torch.testing.assert_close(attn(x, cos, sin, None, None), reference_attention(attn, x), atol=1e-5, rtol=1e-4)


def test_gqa_equals_mha_with_repeated_kv_weights():
    gqa = tiny_model(num_key_value_heads=2, qk_norm=False)
    mha = tiny_model(num_key_value_heads=4, qk_norm=False)
    sd = gqa.state_dict()
    for key, w in list(sd.items()):
        if key.endswith(("k_proj.weight", "v_proj.weight")):  # (2*hd, C) -> each kv head twice, in order
            sd[key] = w.view(2, 16, 64).repeat_interleave(2, dim=0).reshape(64, 64)
    mha.load_state_dict(sd)
    x = torch.randint(3, 97, (2, 9))
    torch.testing.assert_close(gqa(x).logits, mha(x).logits, atol=1e-5, rtol=1e-4)


def test_rope_matches_complex_rotation():
    hd, T = 16, 11
    x = torch.randn(1, T, 3, hd)
    cos, sin = rope_cos_sin(torch.arange(T)[None], hd, 1e4)
    got = apply_rope(x, cos, sin)
    # Non-interleaved pairing: dimension i pairs with i + hd/2 as the real and imaginary parts.
    z = torch.complex(x[..., : hd // 2].double(), x[..., hd // 2:].double())
    freqs = 1.0 / 1e4 ** (torch.arange(0, hd, 2).double() / hd)
    z = z * torch.polar(torch.ones(T, hd // 2, dtype=torch.double), torch.arange(T)[:, None] * freqs)[None, :, None]
    torch.testing.assert_close(got, torch.cat([z.real, z.imag], -1).float(), atol=1e-5, rtol=1e-5)


def test_rmsnorm_formula():
    norm = tiny_model().model.norm
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    ref = norm.weight * (x.float() / torch.sqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6))
    out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref.to(torch.bfloat16))


def test_kv_cache_decoding_equals_full_forward():
    model = tiny_model()
    x = torch.randint(3, 97, (2, 12))
    full = model(x).logits
    cache = KVCache(model.config.num_hidden_layers, capacity=4)  # small capacity: forces the buffers to grow
    steps = [model(x[:, :5], past_key_values=cache, use_cache=True).logits]
    steps += [model(x[:, i:i + 1], past_key_values=cache, use_cache=True).logits for i in range(5, 9)]
    steps.append(model(x[:, 9:], past_key_values=cache, use_cache=True).logits)  # a chunk onto a warm cache
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("qk_norm", [True, False])
def test_bound_forward_is_the_module_forward_bit_for_bit(qk_norm):
    model = tiny_model(qk_norm=qk_norm)
    step = bind_forward(model)
    x = torch.randint(3, 97, (2, 9))
    mask = torch.ones_like(x)
    mask[0, :3] = 0  # left padding

    def prefill_and_decode(fwd) -> list[torch.Tensor]:  # as generate calls it: the prompt, then one token at a time
        cache = KVCache(model.config.num_hidden_layers)
        out = [fwd(x[:, :7], attention_mask=mask[:, :7], past_key_values=cache, logits_to_keep=1).logits]
        return out + [fwd(x[:, i:i + 1], attention_mask=mask[:, :i + 1], past_key_values=cache).logits for i in (7, 8)]

    for a, b in zip(prefill_and_decode(model), prefill_and_decode(step)):
        assert torch.equal(a, b)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(2)  # an in-place change reaches the bound weights
    assert torch.equal(bind_forward(model)(x).logits, model(x).logits)


def test_bound_forward_keeps_modules_with_hooks():
    model = tiny_model()
    seen = []
    model.model.layers[1].mlp.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    step = bind_forward(model)
    x = torch.randint(3, 97, (1, 5))
    assert torch.equal(step(x).logits, model(x).logits) and len(seen) == 2  # the hook ran in both


def test_kv_cache_writes_in_place():
    cache = KVCache(1, capacity=8)
    k = torch.randn(1, 2, 3, 4)
    cache.update(0, k, k)
    buffer = cache.keys[0]
    cache.update(0, k[:, :, :1], k[:, :, :1])
    assert cache.keys[0] is buffer and cache.get_seq_length() == 4


def test_loss_is_shifted_cross_entropy_with_ignore_index():
    model = tiny_model()
    x = torch.randint(3, 97, (2, 10))
    labels = x.clone()
    labels[0, :4] = -100
    out = model(x, labels=labels)
    ref = F.cross_entropy(out.logits[:, :-1].reshape(-1, 97), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, ref)
    torch.testing.assert_close(model(x, labels=labels, loss_only=True).loss, ref)


def test_greedy_generation_is_deterministic_and_padding_free():
    model = tiny_model()
    prompts = [torch.randint(3, 97, (n,)) for n in (3, 6)]
    alone = [model.generate(p[None], max_new_tokens=8, eos_token_id=-1)[0, len(p):] for p in prompts]
    assert torch.equal(alone[0], model.generate(prompts[0][None], max_new_tokens=8, eos_token_id=-1)[0, 3:])
    # A left-padded batch gives each row what it gets alone.
    ids = torch.zeros(2, 6, dtype=torch.long)
    mask = torch.zeros(2, 6, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, 6 - len(p):], mask[i, 6 - len(p):] = p, 1
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=8, eos_token_id=-1)
    assert torch.equal(batch[0, 6:], alone[0]) and torch.equal(batch[1, 6:], alone[1])
    no_cache = model.generate(prompts[1][None], max_new_tokens=8, eos_token_id=-1, use_cache=False)[0, 6:]
    assert torch.equal(no_cache, alone[1])


def test_safetensors_round_trip_is_exact(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "full_sft_64.safetensors")
    loaded = load_model(weight_path(tmp_path, "full_sft", 64))
    assert loaded.config.to_dict() == model.config.to_dict()
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


def test_transformers_save_and_from_pretrained_give_same_logits(tmp_path):
    model = tiny_model()
    hf_pebble.PebbleForCausalLM.from_plain(model).save_pretrained(tmp_path)
    loaded = hf_pebble.PebbleForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(3, 97, (1, 8))
    torch.testing.assert_close(loaded(x).logits, model(x).logits)


def minimind_state_dict(hidden: int, layers: int, heads: int, kv_heads: int, vocab: int, qk_norm: bool) -> dict:
    """A float16 state_dict laid out as the MiniMind spec lists it, with random values."""
    hd, inter = hidden // heads, math.ceil(hidden * math.pi / 64) * 64
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (heads * hd, hidden), p + "self_attn.k_proj.weight": (kv_heads * hd, hidden),
            p + "self_attn.v_proj.weight": (kv_heads * hd, hidden), p + "self_attn.o_proj.weight": (hidden, heads * hd),
            p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
        })
        if qk_norm:
            shapes.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
    g = torch.Generator().manual_seed(0)
    sd = {k: (torch.randn(s, generator=g) * 0.02).half() for k, s in shapes.items()}
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()
    return sd


@pytest.mark.parametrize("qk_norm,kv_heads", [(True, 4), (False, 2)])  # MiniMind-3, minimind2-era
def test_minimind_layout_loads_strict(tmp_path, qk_norm, kv_heads):
    sd = minimind_state_dict(64, 2, 8, kv_heads, 97, qk_norm)
    model = PebbleForCausalLM(PebbleConfig(hidden_size=64, num_hidden_layers=2, num_key_value_heads=kv_heads,
                                           vocab_size=97, qk_norm=qk_norm))
    model.load_state_dict(sd, strict=True)
    # The same file as MiniMind writes it (`.pth`, with a DDP prefix) loads with its config read off the shapes.
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "full_sft_64.pth")
    loaded = load_model(weight_path(tmp_path, "full_sft", 64))
    assert (loaded.config.num_key_value_heads, loaded.config.qk_norm) == (kv_heads, qk_norm)
    x = torch.randint(3, 97, (1, 6))
    torch.testing.assert_close(loaded.eval()(x).logits, model.eval()(x).logits)


def test_pth_with_pickled_objects_is_refused(tmp_path):
    torch.save({"config": {"hidden": 64}, "w": torch.zeros(2)}, tmp_path / "bad_64.pth")
    with pytest.raises(PebbleError, match="bad_64.pth"):
        load_model(tmp_path / "bad_64.pth")


def test_missing_weight_names_both_candidates(tmp_path):
    with pytest.raises(PebbleError, match="full_sft_512.safetensors"):
        weight_path(tmp_path, "full_sft", 512)


def test_config_rejects_bad_head_split():
    with pytest.raises(ValueError, match="multiple"):
        PebbleConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=3)
